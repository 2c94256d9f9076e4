"""A run's errors next to the papers' (``papers.yaml``): the W&B summary fields and the console table."""

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

PAPERS = Path(__file__).with_name("papers.yaml")
DATA_NAMES = {"imagenet": "ILSVRC-2012 val", "digits": "embedded digits", "mnist": "MNIST test"}


@dataclass(frozen=True)
class Reference:
    """One reported figure and how it was measured."""
    id: str
    model: str
    paper: str
    models: int
    data: str
    protocol: str
    top1: float | None
    top5: float | None
    preset: str | None = None  # set on a figure of a particular training recipe (MNIST's distortions)
    scales: tuple[int, ...] | None = None  # a dense or multiscale figure's test scales (shorter sides)
    resize: int | None = None  # a centre-crop figure's shorter side before the crop, where the row gives it
    experiment: str | None = None  # the experiment (conf/experiment/) of a library's recipe that made the figure

    @property
    def protocol_label(self) -> str:
        """``center``, or ``center 224 of 232`` where the figure's resize is its own."""
        return f"{self.protocol} 224 of {self.resize}" if self.resize else self.protocol

    @property
    def single_model(self) -> bool:
        return self.models == 1


def load_references() -> dict[str, Reference]:
    return {key: Reference(id=key, **{**row, "scales": tuple(row["scales"]) if row.get("scales") else None})
            for key, row in yaml.safe_load(PAPERS.read_text()).items()}


def references_for(model: str, ids: list[str] | None = None) -> list[Reference]:
    """The rows an experiment names, or every row of ``model`` when it names none.

    Raises:
        ValueError: for an id that is not in ``papers.yaml``, listing the valid ones.
    """
    table = load_references()
    if ids is None:
        return [r for r in table.values() if r.model == model]
    unknown = [i for i in ids if i not in table]
    if unknown:
        raise ValueError(f"compare_with names {unknown}, which are not in {PAPERS}; valid: {', '.join(table)}")
    return [table[i] for i in ids]


def data_label(data_name: str | None) -> str | None:
    """The name a data set has in ``papers.yaml`` (``imagenet`` -> ILSVRC-2012 val)."""
    return DATA_NAMES.get(data_name, data_name) if data_name else None


def target(references: list[Reference], protocol: str, data_name: str | None = None,
           preset: str | None = None, experiment: str | None = None) -> Reference | None:
    """The figure a single run is measured against: a single model's, preferring the row of the run's data
    set and protocol, then the run's protocol on any data set, then any single model's. A row tied to a
    training preset or to an experiment (``preset:``, ``experiment:`` in papers.yaml: a library's recipe) is the
    target of runs of that preset or experiment only, and theirs first."""
    single = sorted((r for r in references
                     if r.single_model and r.preset in (None, preset) and r.experiment in (None, experiment)),
                    key=lambda r: (r.experiment is None, r.preset is None))  # stable: else papers.yaml's order
    data = data_label(data_name)
    for matches in (lambda r: r.data == data and r.protocol == protocol, lambda r: r.protocol == protocol):
        found = next((r for r in single if matches(r)), None)
        if found is not None:
            return found
    return single[0] if single else None


def coverage(images: float | None, set_images: float | None) -> str | None:
    """``"64 of 360 images"`` for a validation that scored part of its set (``trainer.limit_val_batches``), else
    None: such a result is never put against a paper's figure, which is the whole set's."""
    if images is None or not set_images or int(images) >= int(set_images):
        return None
    return f"{int(images):,} of {int(set_images):,} images"


PARTIAL_NOTE = ("validated on {part} (trainer.limit_val_batches): not comparable with the papers' "
                "figures, which are the whole set's; no gap is given")


def summary_fields(top1: float | None, top5: float | None, protocol: str, references: list[Reference],
                   data_name: str | None = None, preset: str | None = None, partial: str | None = None,
                   experiment: str | None = None) -> dict:
    """``paper/*`` and ``gap/*`` (run minus paper, percentage points) for the W&B summary; for a validation of part
    of the set (``partial``: ``coverage``'s words), ``val/partial`` and no gap."""
    fields: dict = {"paper/protocol": protocol}
    if partial:
        fields["val/partial"] = partial
    ref = target(references, protocol, data_name, preset, experiment)
    if ref is None:
        return fields
    fields.update({"paper/reference": f"{ref.paper}, {ref.data}, {ref.protocol_label}", "paper/top1_err": ref.top1,
                   "paper/top5_err": ref.top5})
    for k, run, paper in (("top1_err", top1, ref.top1), ("top5_err", top5, ref.top5)):
        if run is not None and paper is not None and not partial:
            fields[f"gap/{k}"] = run - paper
    return {k: v for k, v in fields.items() if v is not None}


def percent(value: float | None, unit: str = "") -> str:
    """An error in percent as the tables print it: two decimals, "-" when there is none."""
    return "-" if value is None else f"{value:.2f}{unit}"


def print_comparison(top1: float | None, top5: float | None, protocol: str, data_name: str,
                     references: list[Reference], preset: str | None = None, console: Console | None = None,
                     partial: str | None = None, experiment: str | None = None) -> None:
    """The run and the papers side by side; ensembles are shown as such, never as the run's target; a validation
    of part of the set (``partial``) gets no gap."""
    console = console or Console(width=None if sys.stdout.isatty() else 100)  # logs keep whole rows
    if not references:
        console.print("no published figure for this model in trainer/results/papers.yaml")
        return
    ref = target(references, protocol, data_name, preset, experiment)
    table = Table(title="this run and the papers (error %)", title_justify="left",
                  caption=None if partial else ("* the single-model figure this run is measured against "
                                                "(gap = run - paper)"),
                  caption_justify="left")
    for column in ("", "data", "protocol", "top-1", "top-5", "gap top-1", "gap top-5"):
        table.add_column(column, justify="right" if column.startswith(("top", "gap")) else "left")
    table.add_row("this run", data_label(data_name) + (f" ({partial})" if partial else ""), protocol, percent(top1),
                  percent(top5), "", "")
    for r in references:
        label = f"{r.paper}" + ("" if r.single_model else f", ensemble of {r.models}")
        label += f", {r.preset} training" if r.preset else ""
        gaps = ("", "")
        if r is ref and not partial:
            label += " *"
            gaps = tuple("-" if run is None or paper is None else f"{run - paper:+.2f}"
                         for run, paper in ((top1, r.top1), (top5, r.top5)))
        table.add_row(label, r.data, r.protocol_label, percent(r.top1), percent(r.top5), *gaps)
    console.print(table)
    if partial:
        console.print(f"note: this run was {PARTIAL_NOTE.format(part=partial)}")
        return
    if ref is not None and ref.protocol != protocol:
        from data_pipelines.protocols import EVAL_PROTOCOLS

        how = (f"python -m trainer.evaluate ckpt_path=... protocol={ref.protocol} scores it under the paper's"
               if ref.protocol in EVAL_PROTOCOLS else f"{ref.protocol} is not reproduced here")
        console.print(f"note: this run's protocol ({protocol}) is not the paper's ({ref.protocol}): the gap mixes "
                      f"the two; {how}")
    if ref is not None and data_label(data_name) != ref.data:
        console.print(f"note: this run's data ({data_label(data_name)}) is not the paper's "
                      f"({ref.data}): the reference is shown for orientation, not as a like-for-like target")
