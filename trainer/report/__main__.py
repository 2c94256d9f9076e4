"""``python -m trainer.report [DIR] --out OUT``: the W&B runs under DIR as a table and a plot, next to the papers.

Reads every W&B run under DIR (offline runs, or the local copies of synced ones) with the W&B CLI
(``wandb leet inspect``), joins the folders of a resumed run (they share its id), and writes
``OUT/report.md`` (one row per run: model, strategy, protocol, epochs, final top-1/top-5 error, the
paper's figure and the gap) and ``OUT/report.png`` (val top-1 and top-5 error per epoch for each
run, the matching paper figures as dashed lines of the same colour).
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from .paper_comparison import percent


def _wandb_cli() -> str:
    return shutil.which("wandb") or str(Path(sys.executable).with_name("wandb"))


def _inspect(run_dir: Path, *flags: str) -> str:
    return subprocess.run([_wandb_cli(), "leet", "inspect", *flags, str(run_dir)], capture_output=True, text=True,
                          check=True, timeout=300).stdout


def read_run(run_dir: Path) -> dict:
    """One run folder: its summary, config and the per-epoch validation history."""
    summary = json.loads(_inspect(run_dir, "--summary", "--json"))
    history = []
    for line in _inspect(run_dir, "--json").splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        item = record.get("history", {}).get("item", {}) if record.get("type") == "history" else {}
        if "val/top1_err" in item:
            history.append(item)
    return {**summary, "history": history, "folder": str(run_dir)}


def collect(root: Path) -> list[dict]:
    """Every run under ``root``, the folders of one run id joined in the order they were written."""
    folders = sorted({p.parent for p in root.rglob("run-*.wandb")})
    runs: dict[str, dict] = {}
    for part in sorted((read_run(f) for f in folders), key=lambda r: r.get("start_time") or ""):
        run = runs.setdefault(part["run_id"], {**part, "history": []})
        run["summary"] = {**run["summary"], **part["summary"]}  # later folders (a resume, an evaluation) win
        run["config"] = part["config"] or run["config"]
        run["history"] += part["history"]
    for run in runs.values():
        by_step = {h.get("trainer/global_step", i): h for i, h in enumerate(run["history"])}
        run["history"] = [by_step[k] for k in sorted(by_step)]
    return list(runs.values())


def _last(value):
    return value.get("last") if isinstance(value, dict) else value


def row(run: dict) -> dict:
    """The report's columns for one run."""
    config, summary = run["config"], run["summary"]
    epochs = 1 + max((h.get("epoch", 0) for h in run["history"]), default=-1)
    protocol = summary.get("paper/protocol") or config.get("data", {}).get("eval_protocol", "center")
    # a later `python -m trainer.evaluate` under another protocol wrote eval/<protocol>/*: those are the figures
    top1 = summary.get(f"eval/{protocol}/top1_err", _last(summary.get("val/top1_err")))
    top5 = summary.get(f"eval/{protocol}/top5_err", _last(summary.get("val/top5_err")))
    return {"run": f"{run.get('name')} ({run['run_id']})", "model": config.get("model", {}).get("model_name"),
            "strategy": config.get("strategy", {}).get("name"), "data": config.get("data", {}).get("name"),
            "protocol": protocol, "epochs": epochs, "top1": top1, "top5": top5,
            "paper_top1": summary.get("paper/top1_err"), "paper_top5": summary.get("paper/top5_err"),
            "gap_top1": summary.get("gap/top1_err"), "gap_top5": summary.get("gap/top5_err"),
            "reference": summary.get("paper/reference", "-")}


def write_markdown(rows: list[dict], path: Path) -> None:
    lines = ["| run | model | strategy | data | protocol | epochs | top-1 err % | top-5 err % | paper top-1 / top-5 "
             "| gap top-1 / top-5 | paper figure |", "|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['model']} | {r['strategy']} | {r['data']} | {r['protocol']} | {r['epochs']} "
                     f"| {percent(r['top1'])} | {percent(r['top5'])} "
                     f"| {percent(r['paper_top1'])} / {percent(r['paper_top5'])} "
                     f"| {percent(r['gap_top1'])} / {percent(r['gap_top5'])} | {r['reference']} |")
    path.write_text("# Runs and the papers\n\nErrors in percent; gap = run - paper (percentage points).\n\n"
                    + "\n".join(lines) + "\n")


def write_plot(runs: list[dict], rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key, paper_key in ((axes[0], "val/top1_err", "paper_top1"), (axes[1], "val/top5_err", "paper_top5")):
        for i, (run, r) in enumerate(zip(runs, rows)):
            points = [(h.get("epoch", 0) + 1, h[key]) for h in run["history"] if key in h]
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, color=colours[i % len(colours)], label=r["run"])
        papers = {(r["reference"], r[paper_key]) for r in rows if r[paper_key] is not None}
        for reference, value in sorted(papers, key=lambda p: p[1]):  # each paper figure once, labelled on the line
            ax.axhline(value, linestyle="--", color="black", linewidth=0.8)
            ax.annotate(f"paper: {value:.2f} ({reference})", (0.01, value), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=7)
        ax.set(title=f"val {key[4:8]} error".replace("top", "top-"), xlabel="epoch", ylabel="error (%)")
        ax.set_ylim(bottom=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", default=".", type=Path, help="folder searched for W&B runs (default: .)")
    parser.add_argument("--out", required=True, type=Path, help="folder for report.md and report.png")
    args = parser.parse_args(argv)
    runs = collect(args.root)
    if not runs:
        print(f"error: no W&B runs (run-*.wandb) under {args.root.resolve()}; runs live in "
              f"outputs/<model>/<run>/wandb/", file=sys.stderr)
        return 1
    rows = [row(run) for run in runs]
    args.out.mkdir(parents=True, exist_ok=True)
    write_markdown(rows, args.out / "report.md")
    write_plot(runs, rows, args.out / "report.png")
    print(f"{len(runs)} run(s): {args.out / 'report.md'}, {args.out / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
