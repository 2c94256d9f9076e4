"""``python -m trainer.evaluate`` under a paper's protocol, and ``python -m trainer.report`` over the runs it
evaluated (the report's own parts: tests/trainer/report/test_report.py)."""

import subprocess
import sys

import pytest

from helpers import library_lines, make_cfg, run_cli, wandb_inspect
from trainer.train import train

TINY = ["trainer.limit_train_batches=5", "trainer.limit_val_batches=4", "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def runs(module_dir, digits_cache):
    """A complete run evaluated under tencrop, a run stopped part-way (max_steps) and one with no validation."""
    root = module_dir
    first = train(make_cfg(root / "a", digits_cache, "trainer.max_epochs=3", *TINY))
    second = train(make_cfg(root / "b", digits_cache, "trainer.max_epochs=3", "trainer.max_steps=10",
                            "experiment=lenet5_1998", "optim.samples=48", *TINY))
    train(make_cfg(root / "c", digits_cache, "trainer.max_epochs=1", *TINY, "trainer.limit_val_batches=0"))
    evaluation = run_cli("trainer.evaluate", f"ckpt_path={first['best_ckpt']}", "protocol=tencrop", cwd=root,
                         env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    return root, first, second, evaluation


def test_evaluate_scores_a_checkpoint_under_tencrop_into_its_wandb_run(runs):
    root, first, _, result = runs
    run_id = wandb_inspect(first["wandb_dir"])["run_id"]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lenet5 from" in result.stdout and "tencrop: val top-1 error" in result.stdout
    assert "this run and the papers" in result.stdout
    training = root / "a" / "run" / "wandb"
    # (in the evaluation's own folder: <run>/evaluate/<protocol>_<time>/ beside a run folder Hydra made; this test's
    # run folder was made in-process, without .hydra/, so the evaluation's went to outputs/evaluate/<time>/)
    evaluations = sorted(root.glob(f"outputs/evaluate/*/wandb/offline-run-*-{run_id}"))
    folders = [*sorted(training.glob(f"offline-run-*-{run_id}")), *evaluations]
    assert len(folders) == 2  # the training run and its evaluation: one W&B run id (wandb sync --id joins them)
    # the evaluation's part is in its own folder: W&B's latest-run in the run's folder stays the training's
    latest = wandb_inspect(training / "latest-run")
    assert latest["summary"]["val/top1_err"]["last"] == pytest.approx(first["val/top1_err"]) and latest["config"]
    summary = wandb_inspect(folders[-1])["summary"]  # evaluation's fields, all under eval/tencrop/
    assert summary["eval/tencrop/paper_protocol"] == "tencrop" and summary["eval/tencrop/paper_top1_err"] == 0.95
    assert summary["eval/tencrop/gap_top1_err"] == pytest.approx(summary["eval/tencrop/top1_err"] - 0.95, abs=1e-3)
    assert (summary["eval/tencrop/images"], summary["eval/tencrop/set_images"]) == (360, 360)  # the whole set
    assert not [k for k in summary if k.startswith(("paper/", "gap/", "val/"))]  # training's record is not touched
    assert wandb_inspect(folders[0])["summary"]["paper/protocol"] == "center"
    assert "warning: protocol=tencrop on 32 px inputs" in result.stderr
    assert "IMAGENET_ROOT is not set: evaluating on the embedded digits sample (data=digits)" in result.stderr
    # the console is this tool's (no bar off a terminal, no W&B banner); Lightning's lines are in the
    # evaluation's run.log
    assert library_lines(result.stdout + result.stderr) == []
    (log,) = root.glob("outputs/evaluate/*/run.log")
    assert "GPU available: False" in log.read_text()


def test_evaluate_under_center_reproduces_the_best_checkpoints_validation_score(runs, digits_cache):
    root, first, _, _ = runs
    result = run_cli("trainer.evaluate", f"ckpt_path={first['best_ckpt']}", "protocol=center", "logger=none",
                     "trainer.enable_progress_bar=false", "trainer.limit_val_batches=4", cwd=root,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    top1 = float(result.stdout.split("center: val top-1 error ")[1].split(" %")[0])
    assert top1 == pytest.approx(first["best/top1_err"], abs=0.01)  # the same weights, data and crops


def test_evaluate_without_a_checkpoint_says_what_to_pass(tmp_path):
    result = run_cli("trainer.evaluate", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert ("error: nothing to evaluate: pass ckpt_path=outputs/<model>/<run>/checkpoints/best.ckpt, or "
            "model.weights=PATH|torchvision with model=<name>") in result.stderr


def test_report_has_a_row_per_run_and_protocol_marks_unfinished_runs_and_leaves_out_runs_without_results(
        runs, tmp_path):
    root, first, second, _ = runs
    result = run_cli("trainer.report", str(root), "--out", str(tmp_path / "report"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "3 run(s), 3 row(s), 1 left out (no validation result)" in result.stdout
    table = (tmp_path / "report" / "report.md").read_text()
    rows = {}
    for line in table.splitlines():
        if line.startswith("| lenet5-single-digits"):
            cells = [c.strip() for c in line.split("|")[1:-1]]
            rows[(cells[0].split("(")[1].rstrip(")"), cells[5])] = cells
    first_id, second_id = (wandb_inspect(r["wandb_dir"])["run_id"] for r in (first, second))
    assert set(rows) == {(first_id, "center"), (first_id, "tencrop"), (second_id, "center")}
    complete, evaluation, stopped = rows[(first_id, "center")], rows[(first_id, "tencrop")], rows[(second_id, "center")]
    assert complete[1:4] == ["lenet5", "single", "digits"]
    assert complete[6:8] == ["complete; partial: 128 of 360 images", "3"]
    # limit_val_batches=4: 4 batches of 32 and of 4 (the experiment's) of the 360 digits, so no gap to the paper
    assert stopped[6:8] == ["stopped after epoch 2 of 3; partial: 16 of 360 images", "2"]  # max_steps ended it
    assert complete[11] == "- / -" and stopped[11] == "- / -"
    assert evaluation[6] == "evaluation"
    assert f"{first['val/top1_err']:.2f} ({first['best/top1_err']:.2f})" == complete[8]
    # the settings the runs do not share: the experiment's recipe against the default's
    assert "trainer.max_steps=10" in stopped[4] and "trainer.max_steps=-1" in complete[4]
    assert all(c[10].startswith("0.95 /") and "LeCun et al. 1998, MNIST test" in c[12] for c in rows.values())
    assert "Left out (no validation result" in table and str(root / "c") in table.split("Left out")[1]
    png = (tmp_path / "report" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_a_wrong_protocol_is_one_line_before_any_heavy_import(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "trainer.evaluate", "ckpt_path=x.ckpt",
                             "protocol=tencorp"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time")]
    assert result.returncode == 2 and said == ["error: protocol=tencorp is not a test protocol; did you mean "
                                               "protocol=tencrop? (the protocols: center, tencrop, dense, multiscale)"]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert imported & {"torch", "pytorch_lightning", "nvidia.dali", "hydra", "wandb"} == set()
    assert not (tmp_path / "outputs").exists()
