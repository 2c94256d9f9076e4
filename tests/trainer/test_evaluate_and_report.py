"""``python -m trainer.evaluate`` under a paper's protocol, and ``python -m trainer.report`` over W&B runs."""

import subprocess
import sys

import pytest

from helpers import library_lines, make_cfg, run_cli, wandb_inspect
from trainer.report.runs import settings_that_differ
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


def test_the_settings_that_differ_leave_out_the_machine_and_keys_older_runs_lack():
    base = {"optim": {"lr": 0.1}, "paths": {"output_dir": "/a"}, "model": {"model_name": "lenet5"},
            "model_name": "lenet5", "git_commit": "1111111aaaa"}
    newer = {**base, "optim": {"lr": 0.2, "fused": False}, "paths": {"output_dir": "/b"}, "git_commit": "2222222bbbb",
             "git_dirty": True}
    assert settings_that_differ([base, newer]) == [{"code": "1111111", "optim.lr": 0.1},
                                                   {"code": "2222222+changes", "optim.lr": 0.2}]
    assert settings_that_differ([base, {**base, "paths": {"output_dir": "/b"}}]) == [{}, {}]
    # trainer.devices only copies strategy.devices (conf/trainer/default.yaml): the one that differs is shown
    one = {**base, "strategy": {"devices": 1}, "trainer": {"devices": 1}}
    two = {**base, "strategy": {"devices": 2}, "trainer": {"devices": 2}}
    assert settings_that_differ([one, two]) == [{"strategy.devices": 1}, {"strategy.devices": 2}]
    # ... unless it was set itself: trainer.devices=2 under strategy.devices=auto ran 2 devices, and says so
    typed = {**base, "strategy": {"devices": "auto"}, "trainer": {"devices": 2}}
    assert settings_that_differ([one, typed]) == [{"strategy.devices": 1, "trainer.devices": 1},
                                                  {"strategy.devices": "auto", "trainer.devices": 2}]


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path):
    result = run_cli("trainer.report", str(tmp_path), "--out", str(tmp_path / "r"), cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "error: no W&B runs (run-*.wandb) under" in result.stderr


def test_the_plot_has_a_panel_per_model_and_data_set_draws_0_percent_and_whole_epochs():
    """What the eye checks in report.png, checked on the figure: one panel per model and data set (digits runs
    never share MNIST's paper line), every epoch drawn (a top-5 of 0 % too), whole-epoch ticks for a
    one-epoch run, and the legend under its panel, where it hides no curve."""
    from trainer.report.plot import make_figure
    from trainer.report.table import Row
    from trainer.results.paper_comparison import Reference

    mnist = Reference("x", "resnet18", "He et al. 2015", 1, "MNIST test", "center", 0.95, 0.2)
    history = [{"epoch": e, "val/top1_err": 10.0 / e, "val/top5_err": 0.0 if e > 1 else 1.0} for e in range(1, 31)]
    rows = [Row("long (a)", "resnet18", "single", "digits", [], "center", "complete", 30, 0.3, 0.0, 0.3, mnist,
                history),
            Row("one (b)", "resnet18", "single", "mnist", ["optim.lr=0.1"], "center", "complete", 1, 5.0, 1.0, 5.0,
                mnist, [{"epoch": 1, "val/top1_err": 5.0, "val/top5_err": 1.0}])]
    fig = make_figure(rows)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["resnet18 on digits: val top-1 error", "resnet18 on mnist: val top-1 error",
                      "resnet18 on digits: val top-5 error", "resnet18 on mnist: val top-5 error"]
    digits_top1, mnist_top1, digits_top5, mnist_top5 = fig.axes
    assert not [line for line in digits_top1.get_lines() if line.get_linestyle() == "--"]  # no MNIST line here
    assert [line.get_ydata()[0] for line in mnist_top1.get_lines() if line.get_linestyle() == "--"] == [0.95]
    (curve,) = [line for line in digits_top5.get_lines() if line.get_linestyle() != "--"]
    assert len(curve.get_xdata()) == 30 and digits_top5.get_yscale() == "symlog"  # the 29 zeros are drawn
    assert mnist_top1.get_yscale() == "log"
    ticks = [t for t in mnist_top1.get_xticks() if mnist_top1.get_xlim()[0] <= t <= mnist_top1.get_xlim()[1]]
    assert ticks == [1.0]  # one epoch: one whole tick, not 0.945 ... 1.050
    legend = digits_top1.get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().y0 < digits_top1.get_window_extent().y0
    assert [t.get_text() for t in mnist_top1.get_legend().get_texts()] == ["one (b): optim.lr=0.1 [complete]"]


def test_the_plot_shows_long_labels_whole_inside_the_image_and_a_rounded_axis_floor():
    from trainer.report.plot import make_figure
    from trainer.report.table import Row

    differs = ["trainer.max_epochs=30", "optim.lr=0.0125", "schedule=lenet5_passes", "data.batch_size=4",
               "optim.weight_decay=0.0005", "model.dropout=0.5", "augment=alexnet", "data.num_workers=4"]
    history = [{"epoch": e, "val/top1_err": 10.0 / e, "val/top5_err": 0.0 if e > 1 else 0.277776} for e in (1, 2)]
    paper = __import__("trainer.results.paper_comparison", fromlist=["Reference"]).Reference(
        "x", "lenet5", "LeCun et al. 1998", 1, "MNIST test", "center", 0.95, 0.2)
    rows = [Row(f"run-{i} (a)", "lenet5", "single", "digits", differs, "center", "complete", 2, 5.0, 0.0, 5.0, paper,
                history) for i in range(3)]
    fig = make_figure(rows)
    fig.canvas.draw()
    top1, top5 = fig.axes
    texts = [t.get_text() for t in top1.get_legend().get_texts()]
    assert len(texts) == 3 and all(t.replace("\n    ", " ").endswith("data.num_workers=4 [complete]") for t in texts)
    for ax in fig.axes:  # every legend whole inside the image
        box = ax.get_legend().get_window_extent()
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 and box.y1 <= fig.bbox.y1
    assert top5.get_ylabel() == "error (%, 0, then log above 0.28 %)"


def test_a_wrong_protocol_is_one_line_before_any_heavy_import(tmp_path):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "trainer.evaluate", "ckpt_path=x.ckpt",
                             "protocol=tencorp"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    said = [line for line in result.stderr.splitlines() if not line.startswith("import time")]
    assert result.returncode == 2 and said == ["error: protocol=tencorp is not a test protocol; did you mean "
                                               "protocol=tencrop? (the protocols: center, tencrop, dense, multiscale)"]
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time")}
    assert imported & {"torch", "pytorch_lightning", "nvidia.dali", "hydra", "wandb"} == set()
    assert not (tmp_path / "outputs").exists()
