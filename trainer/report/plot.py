"""The report's figure: one panel per model and data set (columns) and error (top-1; top-5 where a paper
reports it), so that runs on the embedded digits and on MNIST never share the MNIST paper's line.

Each run keeps one colour and marker in every panel; markers are hollow and shrink from run to run, so
runs whose curves coincide still show as nested markers. The error axis is logarithmic above 1 % and
linear below it (symlog): early epochs (tens of percent) and the last ones (near the paper) both stay
readable, and an epoch at 0 % (top-5 on the digits) is drawn, on the axis's floor. Epochs are whole numbers.
The papers' figures are dashed lines on the panel of their model and data set; the legend sits under its
panel, where it hides no curve.
"""

from pathlib import Path

from .seeds import SeedGroup, epoch_band
from .table import Row

MARKERS = "osD^vP<>Xh"


LEGEND_WIDTH = 110  # characters of a legend line at fontsize 7 under a 7-inch panel


def _label(row: Row) -> str:
    """The run and what differs in it, whole, over as many lines as it takes (a cut label hid what differed)."""
    import textwrap

    text = f"{row.run}: {' '.join(row.differs)}" if row.differs else row.run
    return textwrap.fill(text, LEGEND_WIDTH, subsequent_indent="    ", break_long_words=True)


def _some_minor(value: float, _) -> str:
    """Labels 2, 3 and 5 of each decade (0.2, 30, ...): enough to read a value off the log axis."""
    mantissa = f"{value:.0e}"[0]
    return f"{value:g}" if mantissa in "235" else ""


def write_plot(rows: list[Row], path: Path, groups: list[SeedGroup] = ()) -> None:
    import matplotlib.pyplot as plt

    fig = make_figure(rows, groups)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def make_figure(rows: list[Row], groups: list[SeedGroup] = ()):
    """The figure (matplotlib's, for ``write_plot`` and the tests); each group of seeds adds its mean per epoch
    and the 95 % interval of it as a band."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from ..results.paper_comparison import data_label

    training = [r for r in rows if r.history]
    panels = list(dict.fromkeys((r.model, r.data.split(",")[0]) for r in rows))  # (model, data set)
    errors = ["top1"] + (["top5"] if any(r.paper and r.paper.top5 is not None for r in rows) else [])
    legend_rows = max(sum(_label(r).count("\n") + 1 for r in rows if (r.model, r.data.split(",")[0]) == p)
                      for p in panels)
    fig, axes = plt.subplots(len(errors), len(panels), figsize=(7 * len(panels), (4.2 + 0.22 * legend_rows) *
                                                                 len(errors)), squeeze=False, constrained_layout=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    style = {r.run: (colours[i % len(colours)], MARKERS[i % len(MARKERS)], 9 - 1.5 * (i % 4))
             for i, r in enumerate(training)}
    for row_index, error in enumerate(errors):
        for ax, (model, data) in zip(axes[row_index], panels):
            mine = [r for r in rows if r.model == model and r.data.split(",")[0] == data]
            values, epochs = [], [1]
            for r in (r for r in mine if r.history):
                colour, marker, size = style[r.run]
                points = [(h["epoch"], h[f"val/{error}_err"]) for h in r.history
                          if h.get(f"val/{error}_err") is not None]
                epochs += [e for e, _ in points]
                if points:
                    ax.plot(*zip(*points), color=colour, marker=marker, markersize=size, markerfacecolor="none",
                            linewidth=1.2, alpha=0.9,
                            label=f"{_label(r)} [{r.status}{', partial: ' + r.partial if r.partial else ''}]")
                    values += [v for _, v in points]
            for group in (g for g in groups if (g.rows[0].model, g.rows[0].data.split(",")[0]) == (model, data)):
                band = epoch_band(group, error)
                if band:
                    epoch, mean, low, high = zip(*band)
                    low = [max(v, 0.0) for v in low]  # an error is never below 0: the interval is cut there
                    ax.fill_between(epoch, low, high, color="grey", alpha=0.3, linewidth=0)
                    ax.plot(epoch, mean, color="black", linewidth=1.6,
                            label=f"mean of {group.final.n} seeds, 95 % interval shaded: {group.label}")
                    values += [*low, *high]
            for r in (r for r in mine if r.status == "evaluation"):
                value = getattr(r, error)
                if value:
                    ax.plot([r.epochs], [value], marker="*", markersize=12, color=style.get(r.run, ("black",))[0],
                            linestyle="none", label=f"{r.run}: {r.protocol} evaluation")
                    values.append(value)
            # like for like: a paper's line on the panel of its own data set only (not MNIST's on the digits)
            papers = {r.paper for r in mine if r.paper and getattr(r.paper, error) and r.paper.data == data_label(data)}
            for paper in sorted(papers, key=lambda p: getattr(p, error)):
                value = getattr(paper, error)
                ax.axhline(value, linestyle="--", color="black", linewidth=0.9)
                preset = f", {paper.preset} training" if paper.preset else ""
                ax.annotate(f"paper {value:g} % ({paper.paper}, {paper.data}, {paper.protocol_label}{preset})",
                            (0.01, value), xycoords=("axes fraction", "data"), xytext=(0, 3),
                            textcoords="offset points", fontsize=7)
                values.append(value)
            positive = [v for v in values if v > 0]
            scale = "log"
            if values and len(positive) < len(values):  # a 0 %: linear up to the smallest other value, log above
                floor = min(positive, default=1.0)
                ax.set_yscale("symlog", linthresh=floor, linscale=0.4)
                ax.set_ylim(0, max(values) * 1.3)
                scale = f"0, then log above {floor:.2g} %"
            elif values:
                ax.set_yscale("log")
                ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
            if values:
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.5, 1, 10: percent as written
                ax.yaxis.set_minor_formatter(FuncFormatter(_some_minor))
            ax.set(title=f"{model} on {data}: val {error.replace('top', 'top-')} error", xlabel="epoch",
                   ylabel=f"error (%, {scale})")
            ax.set_xlim(0.5, max(epochs) + 0.5)  # whole epochs, also for a one-epoch run
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
            ax.grid(alpha=0.3, which="both")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.14), frameon=False)
    return fig
