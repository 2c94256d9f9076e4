"""Seeds taken together: a sweep over seeds is one W&B group and one row of the report's seeds section, with n,
mean ± std, the 95 % interval (Student's t), a band in the plot and where the paper's figure lies."""

import json
import re
import subprocess

import pytest

from helpers import run_cli
from trainer.report.seeds import Spread
from trainer.results.tracking import wandb_cli


def test_the_spread_of_three_values_is_students_interval():
    spread = Spread.of([1.0, 2.0, 3.0])
    half = 4.302652729911275 / 3 ** 0.5  # t(0.975, 2) * std / sqrt(n), std = 1
    assert (spread.n, spread.mean, spread.std, spread.minimum, spread.maximum) == (3, 2.0, 1.0, 1.0, 3.0)
    assert (spread.low, spread.high) == (pytest.approx(2 - half), pytest.approx(2 + half))
    assert spread.against(4.0).startswith("matches: the paper's 4 % is inside the interval")
    assert spread.against(5.0) == "below the paper's 5 %: the whole interval is below it"
    assert spread.against(-1.0) == "above the paper's -1 %: the whole interval is above it"


def test_a_seed_sweep_is_one_wandb_group_and_one_row_with_its_interval_and_band(tmp_path, digits_cache):
    env = {"CONVNET_CACHE": str(digits_cache)}
    sweep = run_cli("trainer", "-m", "seed=1,2,3", "trainer.max_epochs=2", "trainer.limit_train_batches=5",
                    "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false", "hydra.sweep.dir=sweep",
                    cwd=tmp_path, env=env, timeout=900)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    finals = [float(e) for e in re.findall(r"val top-1 error \(final\) │ ([\d.]+) %", sweep.stdout)]
    assert len(finals) == 3
    groups = set()
    for part in sorted((tmp_path / "sweep").glob("*/wandb/offline-run-*")):
        records = subprocess.run([wandb_cli(), "leet", "inspect", "--json", str(part)], capture_output=True,
                                 text=True, check=True).stdout
        run = next(json.loads(line)["run"] for line in records.splitlines() if '"type":"run"' in line.replace(" ", ""))
        groups.add(run.get("run_group") or run.get("runGroup") or run.get("group"))
    # the configuration less the seed names the group: every point of the sweep is in the same one
    assert groups == {"default trainer.max_epochs=2 trainer.limit_train_batches=5 trainer.num_sanity_val_steps=0 "
                      "trainer.enable_progress_bar=False"}  # (as Hydra writes the point's overrides)

    report = run_cli("trainer.report", "sweep", "--out", "report", cwd=tmp_path, env=env, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    spread = Spread.of(finals)
    assert "lenet5 / single / digits, center: n = 3 (seeds 1, 2, 3)" in report.stdout
    assert f"final top-1 error {spread.text()}" in report.stdout
    # LeNet-5's 0.95 % (MNIST) is the run's reference: whether it lies inside the interval is said
    assert re.search(r"against LeCun et al\. 1998, MNIST test, center \(0\.95 %\): gap [+-][\d.]+ \(interval "
                     r"[+-][\d.]+ to [+-][\d.]+\); final error (matches|above|below)", report.stdout)
    table = (tmp_path / "report" / "report.md").read_text()
    (row,) = [line for line in table.split("## Seeds")[1].splitlines() if line.startswith("| lenet5 / single")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:4] == ["center", "3", "1, 2, 3"] and cells[4] == spread.text() and cells[6] == "0.95"

    from trainer.report.plot import make_figure
    from trainer.report.runs import collect
    from trainer.report.seeds import seed_groups
    from trainer.report.table import rows_of

    rows, _ = rows_of(collect(tmp_path / "sweep"))
    groups = seed_groups(rows)
    figure = make_figure(rows, groups)
    top1 = figure.axes[0]
    (mean,) = [line for line in top1.get_lines() if line.get_label().startswith("mean of 3 seeds")]
    assert list(mean.get_xdata()) == [1, 2] and mean.get_ydata()[-1] == pytest.approx(spread.mean)
    assert len(top1.collections) == 1  # the band: the interval of the mean at each epoch


def test_seeds_of_older_code_join_their_group_and_other_settings_do_not():
    """A setting one run lacks came with newer code (the run had its default); any other difference is another
    configuration, and so is another protocol."""
    from trainer.report.seeds import seed_groups
    from trainer.report.table import Row

    def row(seed, top1, protocol="center", **settings):
        configuration = {"optim.lr": "0.1", **settings}
        return Row(f"r{seed}", "lenet5", "single", "mnist", [f"seed={seed}"], protocol, "complete", 20, top1, 0.0,
                   top1, None, seed=seed, configuration=configuration)

    rows = [row(1, 1.0), row(2, 1.2, **{"data.eval_scales": "null"}), row(3, 1.1), row(4, 0.5, **{"optim.lr": "0.2"}),
            row(5, 0.6, **{"optim.lr": "0.2"}), row(6, 2.0, protocol="tencrop")]
    groups = seed_groups(rows)
    assert [g.seeds for g in groups] == [[1, 2, 3], [4, 5]]
    assert groups[0].final.mean == pytest.approx(1.1) and groups[0].label == "lenet5 / single / mnist"
