"""The report's rows: one per run and protocol (training's validation, then each later evaluation)."""

from dataclasses import dataclass, field
from pathlib import Path

from ..results.paper_comparison import Reference, coverage, percent, references_for, target
from .runs import as_override, configuration, followers, settings_that_differ


@dataclass
class Row:
    run: str                  # "<name> (<W&B id>)"
    model: str
    strategy: str
    data: str                 # what the run trained on (a data set, and its augmentation when not the set's own)
    differs: list[str]        # key=value of the settings this run does not share with every other run
    protocol: str
    status: str               # complete | stopped after/in epoch k of N | running, ... | evaluation
    epochs: int               # the last validated epoch (from 1)
    top1: float | None        # the last validation's (or the evaluation's) errors, in percent
    top5: float | None
    best_top1: float | None   # the lowest validation top-1 error of the run
    paper: Reference | None   # the figure this row is measured against
    history: list[dict] = field(default_factory=list, repr=False)  # per-epoch validation records (plot)
    partial: str | None = None        # "64 of 360 images": validated on part of the set, never against a paper
    seed: int | None = None
    configuration: dict = field(default_factory=dict, repr=False)  # the settings less the seed (runs.configuration)
    references: list = field(default_factory=list, repr=False)  # every figure the run's config compares it with

    def gap(self, key: str) -> float | None:
        run, paper = getattr(self, key), getattr(self.paper, key, None)
        return None if run is None or paper is None or self.partial else run - paper


def _references(config: dict) -> list[Reference]:
    """The figures a run's config compares it with (``compare_with``, else every row of its model)."""
    model = config.get("model", {}).get("model_name")
    try:
        return references_for(model, config.get("compare_with"))
    except ValueError:  # a row that papers.yaml no longer has
        return references_for(model)


def _paper(config: dict, references: list[Reference], protocol: str) -> Reference | None:
    """Computed from the run's config (its ``references``), not read from its summary: an unfinished run has no
    paper/* fields."""
    data = config.get("data", {})
    return target(references, protocol, data.get("name"), data.get("preset"), config.get("experiment_name"))


def trained_on(data: dict) -> str:
    """``mnist``, ``mnist, mnist_distorted augmentation``, ``imagenet, resnet augmentation``: the training data."""
    name, preset = data.get("name"), data.get("preset")
    return f"{name}, {preset} augmentation" if preset and preset != name else str(name)


def _status(run: dict, epochs: int) -> str:
    """``complete``, or where the run stopped (or is), epochs counted from 1 as the stop message counts them:
    ``stopped after epoch 8 of 30`` (at an epoch's end), ``stopped in epoch 9 of 30`` (in its middle)."""
    planned = run["config"].get("trainer", {}).get("max_epochs")
    if planned is not None and epochs >= planned:
        return "complete"
    reached = max(epochs, int(run["summary"].get("epoch") or 0))  # W&B's last logged epoch: a step in a later one
    if run.get("state") == "running":
        return f"running, in epoch {reached} of {planned}"
    if reached > epochs:
        return f"stopped in epoch {reached} of {planned}"
    return f"stopped after epoch {epochs} of {planned}"


def rows_of(runs: list[dict]) -> tuple[list[Row], list[dict]]:
    """The table's rows, and the runs left out (no validation result, no evaluation)."""
    # compared among the runs of one model and data set: the columns already say how those differ, and
    # everything a model or data set brings with it (input size, channels, transforms) would bury the rest
    kind = [(r["config"].get("model", {}).get("model_name"), r["config"].get("data", {}).get("name")) for r in runs]
    differing: list[dict] = [{} for _ in runs]
    copies = followers()
    for group in set(kind):
        members = [i for i, k in enumerate(kind) if k == group]
        for i, differs in zip(members, settings_that_differ([runs[i]["config"] for i in members])):
            differing[i] = differs
    rows, left_out = [], []
    for run, differs in zip(runs, differing):
        config, summary = run["config"], run["summary"]
        evaluations = sorted({k.split("/")[1] for k in summary if k.startswith("eval/") and k.endswith("/top1_err")})
        if not run["history"] and not evaluations:
            left_out.append(run)
            continue
        common = {"run": f"{run.get('name')} ({run['run_id']})", "model": config.get("model", {}).get("model_name"),
                  "strategy": config.get("strategy", {}).get("name"), "data": trained_on(config.get("data", {})),
                  "differs": [as_override(k, v) for k, v in differs.items()], "seed": config.get("seed"),
                  "configuration": configuration(config, copies), "references": _references(config)}
        epochs = max((int(h.get("epoch") or 0) for h in run["history"]), default=0)
        if run["history"]:
            protocol = config.get("data", {}).get("eval_protocol", "center")
            last = run["history"][-1]
            rows.append(Row(**common, protocol=protocol, status=_status(run, epochs), epochs=epochs,
                            top1=last.get("val/top1_err"), top5=last.get("val/top5_err"),
                            best_top1=min(h["val/top1_err"] for h in run["history"]),
                            paper=_paper(config, common["references"], protocol), history=run["history"],
                            partial=coverage(last.get("val/images"), last.get("val/set_images"))))
        for protocol in evaluations:  # `python -m trainer.evaluate ... protocol=<p>` on this run's checkpoint
            rows.append(Row(**common, protocol=protocol, status="evaluation", epochs=epochs,
                            top1=summary.get(f"eval/{protocol}/top1_err"),
                            top5=summary.get(f"eval/{protocol}/top5_err"),
                            best_top1=None, paper=_paper(config, common["references"], protocol),
                            partial=coverage(summary.get(f"eval/{protocol}/images"),
                                             summary.get(f"eval/{protocol}/set_images"))))
    return rows, left_out


def figures_beside(rows: list[Row]) -> list[str]:
    """Every figure the runs are compared with, one table row each (the papers' and the libraries' recipes side by
    side: ``experiment=resnet50_2015`` and ``resnet50_tv2`` both name He et al.'s and torchvision's), with the runs
    measured against it."""
    seen: dict[str, tuple[Reference, list[str]]] = {}
    for r in rows:
        for ref in r.references:
            seen.setdefault(ref.id, (ref, []))
        if r.paper is not None and r.run not in seen[r.paper.id][1]:
            seen[r.paper.id][1].append(r.run)
    if not seen:
        return []
    lines = ["", "## The figures beside them", "",
             "Every figure these runs' configs compare them with (`compare_with`), and the runs measured against it.",
             "", "| figure | model | data | protocol | top-1 err % | top-5 err % | the target of |",
             "|---|---|---|---|---:|---:|---|"]
    for ref, runs in seen.values():  # (the figure first: the runs' table above is the one whose rows start with a run)
        who = ref.paper + ("" if ref.single_model else f", ensemble of {ref.models}")
        lines.append(f"| {who} | {ref.model} | {ref.data} | {ref.protocol_label} | {percent(ref.top1)} "
                     f"| {percent(ref.top5)} | {', '.join(runs) or '-'} |")
    return lines


def write_markdown(rows: list[Row], left_out: list[dict], path: Path, extra: list[str] = ()) -> None:
    """The table, the runs left out, then ``extra`` lines (the seeds' section)."""
    lines = ["# Runs and the papers", "",
             "Errors in percent: the last validation's (best top-1 in brackets), or an evaluation's; "
             "gap = run - paper (percentage points). The paper's figure is the one each run is measured against "
             "(`trainer/results/papers.yaml`: same model, data set, protocol and, where the paper has one, training "
             "preset). "
             "\"differs\": the settings of a run that not every run of its model and data set here shares (resolved "
             "config; the machine, paths and bookkeeping left out). A row marked partial was validated on part of "
             "its set (`trainer.limit_val_batches`): it gets no gap, the papers' figures being the whole set's.", ""]
    lines += ["| run | model | strategy | data | differs | protocol | status | epochs | top-1 err % | top-5 err % "
              "| paper top-1 / top-5 | gap top-1 / top-5 | paper figure |",
              "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        best = f" ({percent(r.best_top1)})" if r.best_top1 is not None else ""
        paper = r.paper
        reference = f"{paper.paper}, {paper.data}, {paper.protocol_label}" if paper else "-"
        reference += f", {paper.preset} training" if paper and paper.preset else ""
        status = f"{r.status}; partial: {r.partial}" if r.partial else r.status
        lines.append(f"| {r.run} | {r.model} | {r.strategy} | {r.data} | {' '.join(r.differs) or '-'} | {r.protocol} "
                     f"| {status} | {r.epochs} | {percent(r.top1)}{best} | {percent(r.top5)} "
                     f"| {percent(getattr(paper, 'top1', None))} / {percent(getattr(paper, 'top5', None))} "
                     f"| {percent(r.gap('top1'))} / {percent(r.gap('top5'))} | {reference} |")
    lines += figures_beside(rows)
    if left_out:
        lines += ["", "Left out (no validation result: the run stopped or failed before its first validation):", ""]
        lines += [f"- {run.get('name')} ({run['run_id']}), W&B state {run.get('state')}: {run['folder']}"
                  for run in left_out]
    path.write_text("\n".join([*lines, *extra]) + "\n")
