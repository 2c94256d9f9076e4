"""``python -m trainer.evaluate`` under a paper's protocol, and ``python -m trainer.report`` over W&B runs."""

import pytest

from conftest import make_cfg, run_cli, wandb_inspect
from trainer.train import train

TINY = ["trainer.limit_train_batches=5", "trainer.limit_val_batches=4", "trainer.num_sanity_val_steps=0",
        "trainer.log_every_n_steps=1"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, digits_cache):
    root = tmp_path_factory.mktemp("runs")
    first = train(make_cfg(root / "a", digits_cache, "trainer.max_epochs=3", *TINY))
    second = train(make_cfg(root / "b", digits_cache, "trainer.max_epochs=2", "experiment=lenet5_1998", *TINY))
    return root, first, second


def test_evaluate_scores_a_checkpoint_under_tencrop_into_its_wandb_run(two_runs, digits_cache):
    root, first, _ = two_runs
    run_id = wandb_inspect(first["wandb_dir"])["run_id"]
    result = run_cli("trainer.evaluate", f"ckpt_path={first['best_ckpt']}", "protocol=tencrop",
                     "trainer.enable_progress_bar=false", "trainer.limit_val_batches=4", cwd=root,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "lenet5 from" in result.stdout and "tencrop: val top-1 error" in result.stdout
    assert "this run and the papers" in result.stdout
    folders = sorted((root / "a" / "run" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(folders) == 2  # the training run and its evaluation: one W&B run id (wandb sync --id joins them)
    summary = wandb_inspect(folders[-1])["summary"]  # evaluation's fields, all under eval/tencrop/
    assert summary["eval/tencrop/paper_protocol"] == "tencrop" and summary["eval/tencrop/paper_top1_err"] == 0.95
    assert summary["eval/tencrop/gap_top1_err"] == pytest.approx(summary["eval/tencrop/top1_err"] - 0.95, abs=1e-3)
    assert not [k for k in summary if k.startswith(("paper/", "gap/", "val/"))]  # training's record is not touched
    assert wandb_inspect(folders[0])["summary"]["paper/protocol"] == "center"
    assert "warning: protocol=tencrop on 32 px inputs" in result.stderr


def test_evaluate_under_center_reproduces_the_best_checkpoints_validation_score(two_runs, digits_cache):
    root, first, _ = two_runs
    result = run_cli("trainer.evaluate", f"ckpt_path={first['best_ckpt']}", "protocol=center", "logger=none",
                     "trainer.enable_progress_bar=false", "trainer.limit_val_batches=4", cwd=root,
                     env={"CONVNET_CACHE": str(digits_cache)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    top1 = float(result.stdout.split("center: val top-1 error ")[1].split(" %")[0])
    assert top1 == pytest.approx(first["best/top1_err"], abs=0.01)  # the same weights, data and crops


def test_evaluate_without_a_checkpoint_says_what_to_pass(tmp_path):
    result = run_cli("trainer.evaluate", cwd=tmp_path, timeout=120)
    assert result.returncode == 1
    assert ("error: nothing to evaluate: pass ckpt_path=outputs/<model>/<run>/checkpoints/best.ckpt, or "
            "model.weights=PATH|torchvision with model=<name>") in result.stderr


def test_report_writes_a_table_and_a_plot_of_the_runs(two_runs, tmp_path):
    root, first, second = two_runs
    result = run_cli("trainer.report", str(root), "--out", str(tmp_path / "report"), cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| lenet5-single-digits")]
    assert len(rows) == 2
    for run, epochs in ((second, 2), (first, 3)):
        run_id = wandb_inspect(run["wandb_dir"])["run_id"]
        (line,) = [r for r in rows if f"({run_id})" in r]
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert cells[1:4] == ["lenet5", "single", "digits"] and cells[5] == str(epochs)
        assert cells[4] in ("center", "tencrop")  # tencrop once the first run was evaluated under it
        assert cells[8].startswith("0.95 /") and "LeCun et al. 1998, MNIST test" in cells[10]
    png = (tmp_path / "report" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path):
    result = run_cli("trainer.report", str(tmp_path), "--out", str(tmp_path / "r"), cwd=tmp_path, timeout=120)
    assert result.returncode == 1 and "error: no W&B runs (run-*.wandb) under" in result.stderr
