"""The report's figure: one panel per model (columns) and error (top-1; top-5 where a paper reports it).

Each run keeps one colour and marker in every panel; markers are hollow and shrink from run to run, so
runs whose curves coincide still show as nested markers. The error axis is logarithmic: early epochs
(tens of percent) and the last ones (near the paper) both stay readable. The papers' figures are
dashed lines on the panel of their model.
"""

from pathlib import Path

from .table import Row

MARKERS = "osD^vP<>Xh"


def _label(row: Row, width: int = 100) -> str:
    text = f"{row.run}: {' '.join(row.differs)}" if row.differs else row.run
    return text if len(text) <= width else text[:width - 1] + "…"


def _some_minor(value: float, _) -> str:
    """Labels 2, 3 and 5 of each decade (0.2, 30, ...): enough to read a value off the log axis."""
    mantissa = f"{value:.0e}"[0]
    return f"{value:g}" if mantissa in "235" else ""


def write_plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    training = [r for r in rows if r.history]
    models = list(dict.fromkeys(r.model for r in rows))
    errors = ["top1"] + (["top5"] if any(r.paper and r.paper.top5 is not None for r in rows) else [])
    fig, axes = plt.subplots(len(errors), len(models), figsize=(6.5 * len(models), 4.5 * len(errors)),
                             squeeze=False, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    style = {r.run: (colours[i % len(colours)], MARKERS[i % len(MARKERS)], 9 - 1.5 * (i % 4))
             for i, r in enumerate(training)}
    for row_index, error in enumerate(errors):
        for ax, model in zip(axes[row_index], models):
            values, zeros = [], 0
            for r in (r for r in training if r.model == model):
                colour, marker, size = style[r.run]
                points = [(h.get("epoch", 0) + 1, h[f"val/{error}_err"]) for h in r.history
                          if h.get(f"val/{error}_err", 0) > 0]  # 0 % has no place on a log axis
                zeros += sum(1 for h in r.history if h.get(f"val/{error}_err") == 0)
                if points:
                    ax.plot(*zip(*points), color=colour, marker=marker, markersize=size, markerfacecolor="none",
                            linewidth=1.2, alpha=0.9, label=f"{_label(r)} [{r.status}]")
                    values += [v for _, v in points]
            for r in (r for r in rows if r.model == model and r.status == "evaluation"):
                value = getattr(r, error)
                if value:
                    ax.plot([r.epochs], [value], marker="*", markersize=12, color=style.get(r.run, ("black",))[0],
                            linestyle="none", label=f"{r.run}: {r.protocol} evaluation")
                    values.append(value)
            papers = {r.paper for r in rows if r.model == model and r.paper and getattr(r.paper, error)}
            for paper in sorted(papers, key=lambda p: getattr(p, error)):
                value = getattr(paper, error)
                ax.axhline(value, linestyle="--", color="black", linewidth=0.9)
                preset = f", {paper.preset} training" if paper.preset else ""
                ax.annotate(f"paper {value:g} % ({paper.paper}, {paper.data}, {paper.protocol}{preset})", (0.01, value),
                            xycoords=("axes fraction", "data"), xytext=(0, 3), textcoords="offset points", fontsize=7)
                values.append(value)
            if values:
                ax.set_yscale("log")
                ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 10: percent as written
                ax.yaxis.set_minor_formatter(FuncFormatter(_some_minor))
            if zeros:
                ax.annotate(f"{zeros} epoch value(s) of 0 % not drawn (log axis)", (0.01, 0.01),
                            xycoords="axes fraction", fontsize=7, color="grey")
            ax.set(title=f"{model}: val {error.replace('top', 'top-')} error", xlabel="epoch", ylabel="error (%, log)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3, which="both")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper right")
    fig.savefig(path, dpi=120)
    plt.close(fig)
