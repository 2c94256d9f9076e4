"""``python -m trainer.report``'s parts: the settings that tell runs apart, the refusal of a folder without runs,
the figure's panels, axes and legends (over real runs, evaluated: tests/trainer/test_evaluate_and_report.py)."""

from helpers import run_cli
from trainer.report.runs import settings_that_differ


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


def test_the_report_shows_torchvisions_figures_beside_he_et_als_and_whose_target_each_is(tmp_path, digits_cache):
    """A ResNet-50 by the paper's recipe and one by torchvision's V2, as their configs reach the report (W&B's
    config): every figure either is compared with, once, each with the runs measured against it."""
    from omegaconf import OmegaConf

    from helpers import make_cfg
    from trainer.report.table import Row, _paper, _references, figures_beside

    rows = []
    for run, experiment in (("paper (a)", "resnet50_2015"), ("modern (b)", "resnet50_tv2")):
        config = OmegaConf.to_container(make_cfg(tmp_path, digits_cache, f"experiment={experiment}", "data=imagenet",
                                                 "data.root=/x"), resolve=True)
        references = _references(config)
        rows.append(Row(run, "resnet50", "single", "imagenet", [], "center", "complete", 1, 30.0, 10.0, 30.0,
                        _paper(config, references, "center"), references=references))
    lines = figures_beside(rows)
    assert lines[1] == "## The figures beside them"
    table = [line.split(" | ") for line in lines if " | resnet50 | " in line]
    assert [(cells[0].lstrip("| "), cells[3], cells[4], cells[6].rstrip(" |")) for cells in table] == [
        ("He et al. 2015", "tencrop", "22.85", "paper (a)"),
        ("torchvision V1 recipe", "center 224 of 256", "23.87", "-"),
        ("torchvision V2 recipe", "center 224 of 232", "19.14", "modern (b)")]
