"""``python -m trainer.report [DIR] --out OUT``: the W&B runs under DIR as a table and a plot, next to the papers.

Reads every W&B run under DIR (offline runs, or the local copies of synced ones) with the W&B CLI
(``wandb leet inspect``), joins the folders of a resumed or evaluated run (they share its id), and writes
``OUT/report.md`` (one row per run and protocol: the settings that differ between the runs, whether the
run is complete, its errors, the paper's figure and the gap; runs without any validation result are
listed apart; runs that differ only in their seed taken together: n, mean ± std, the 95 % interval and
where the paper's figure lies, ``seeds.py``) and ``OUT/report.png`` (validation error per epoch, one panel per
model, the papers' figures on their model's panel, a band for each group of seeds).
"""

import argparse
import sys
from pathlib import Path

from ..cli import REFUSED
from .plot import write_plot
from .runs import collect
from .seeds import markdown, seed_groups
from .table import rows_of, write_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=".", type=Path, help="folder searched for W&B runs (default: .)")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md and report.png")
    args = parser.parse_args(argv)
    runs = collect(args.root)
    if not runs:
        print(f"error: no W&B runs (run-*.wandb) under {args.root.resolve()}; runs live in "
              f"outputs/<model>/<run>/wandb/", file=sys.stderr)
        return REFUSED
    rows, left_out = rows_of(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    groups = seed_groups(rows)
    write_markdown(rows, left_out, args.out / "report.md", markdown(groups))
    write_plot(rows, args.out / "report.png", groups)
    for group in groups:
        print(group.summary())
    skipped = f", {len(left_out)} left out (no validation result)" if left_out else ""
    print(f"{len(runs)} run(s), {len(rows)} row(s){skipped}: {args.out / 'report.md'}, {args.out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
