"""The suite's fixtures and hooks: an isolated HOME, a cached digits folder, a folder per module, the GPU and slow
marks, the workers' CPU share. What tests share besides fixtures is in helpers.py."""

import os
import shutil
from pathlib import Path

from data_pipelines.sharding import cpu_share
from trainer.cli import pause_collector, resume_collector

pause_collector()  # as python -m trainer does, while the libraries and test modules load

import pytest  # noqa: E402
import torch  # noqa: E402

# The test workers (pytest-xdist) are processes sharing the machine, as a run's processes on a node are: each
# takes its share of the CPUs (trainer/parallel/cpu_threads.py's rule), for its own torch and, through
# OMP_NUM_THREADS, for every training process a test starts. Two workers on 2 cores, each with torch's
# default of 2 threads and its runs' DALI threads, stalled each other (docs/development.md, "The suite").
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(cpu_share(WORKERS)[0])
    torch.set_num_threads(cpu_share(WORKERS)[0])


# The files of end-to-end runs, several processes and the local Slurm: marked ``slow``, which ``make test-fast``
# leaves out (what a developer runs between edits); ``make test`` runs everything.
SLOW = ("cluster/", "trainer/run/test_faults.py", "trainer/run/test_interrupt.py", "trainer/run/test_run.py",
        "trainer/run/test_recipe_resume.py", "trainer/run/test_ema.py", "trainer/run/test_accumulation.py",
        "trainer/parallel/test_two_gpu_split.py", "trainer/parallel/test_cpu_threads.py",
        "trainer/parallel/test_shared_cpus.py",
        "trainer/test_evaluate_and_report.py", "trainer/test_evaluate_dense.py", "trainer/test_export.py",
        "trainer/report/test_seeds.py")


# The order the workers take the files in (make test: --no-loadscope-reorder keeps it). xdist's own order, files
# with the most tests first, put the two-node Slurm job, one test of a minute spent mostly waiting for Slurm, last:
# it ran alone while the other worker had nothing left (docs/development.md, "The suite"). It starts first, beside
# the files of many quick tests; the rest keep xdist's order, so the suite ends on short files.
FIRST = ("cluster/test_slurm_two_nodes.py",)


def in_worker_order(items: list, tests: Path) -> list:
    """``items`` grouped by file (in-file order kept): ``FIRST``, then the files with the most tests."""
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(Path(item.fspath).relative_to(tests).as_posix(), []).append(item)
    order = sorted(files, key=lambda name: (name not in FIRST, -len(files[name])))
    return [item for name in order for item in files[name]]


@pytest.hookimpl(tryfirst=True)  # before pytest's own -m selection reads the marks
def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.gpu(n)``: skipped, with the reason, where fewer than n CUDA GPUs can be used. The files of
    ``SLOW`` get the ``slow`` mark. The files in the workers' order (``in_worker_order``)."""
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    tests = Path(__file__).parent
    for item in items:
        if Path(item.fspath).relative_to(tests).as_posix().startswith(SLOW):
            item.add_marker(pytest.mark.slow)
        marker = item.get_closest_marker("gpu")
        needed = (marker.args[0] if marker and marker.args else 1) if marker else 0
        if needed > have:
            item.add_marker(pytest.mark.skip(reason=f"needs {needed} CUDA GPU(s), this machine has {have}: "
                                                    f"run `make gpu-check` on a GPU machine"))
    items[:] = in_worker_order(items, tests)


def pytest_collection_finish(session):
    """The collector on again once the test modules are loaded, what they loaded frozen first, as python -m trainer
    does (trainer/cli.py's resume_collector): the collections during the tests' in-process runs skip them."""
    resume_collector()


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory) -> Path:
    """One digits folder for the whole session (written once, as a user's cache would be)."""
    from data_pipelines import write_digits

    cache = tmp_path_factory.mktemp("cache")
    write_digits(cache / "digits")
    return cache


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory, request):
    """A folder for a run the module's tests share, removed as tmp_path's are when the module's tests passed
    (pyproject's tmp_path_retention_policy applies to tmp_path only)."""
    failed_before = request.session.testsfailed
    folder = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield folder
    if request.session.testsfailed == failed_before:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No W&B login, no ImageNet: the state of a fresh machine."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "IMAGENET_ROOT", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
