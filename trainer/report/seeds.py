"""Runs that differ only in their seed, taken together: n, mean, standard deviation, min/max and a 95 % interval
(Student's t) of the final and the best top-1 error, and where the paper's figure lies against that interval.

One run says little: LeNet-5 by the paper's procedure at 16 patterns a step ended at 1.10 % with one seed and
0.99 % with another. A claim against a paper is made on the interval: "matches" when the paper's figure is
inside it, "below" or "above" only when the whole interval is.
"""

import math
import statistics
from dataclasses import dataclass

from ..results.paper_comparison import percent
from .table import Row

CONFIDENCE = 0.95
LEVEL = f"{CONFIDENCE * 100:.0f} %"  # "95 %", as the house writes percentages


@dataclass(frozen=True)
class Spread:
    """The values of one figure over the seeds, and the interval in which their mean lies at ``CONFIDENCE``."""
    n: int
    mean: float
    std: float       # the sample standard deviation (n - 1)
    low: float       # the interval: mean -+ t(0.975, n - 1) * std / sqrt(n)
    high: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, values: list[float]) -> "Spread":
        from scipy.stats import t

        n, mean = len(values), statistics.fmean(values)
        std = statistics.stdev(values) if n > 1 else 0.0
        half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n) if n > 1 else math.inf
        return cls(n, mean, std, mean - half, mean + half, min(values), max(values))

    def against(self, paper: float | None) -> str:
        """Where ``paper`` lies against the interval, in words a claim can use."""
        if paper is None:
            return "-"
        if self.low <= paper <= self.high:
            return f"matches: the paper's {paper:g} % is inside the interval"
        side = "below" if self.high < paper else "above"
        return f"{side} the paper's {paper:g} %: the whole interval is {side} it"

    def text(self) -> str:
        """``0.85 ± 0.05 % (95 % interval 0.73 to 0.97; min 0.80, max 0.90)``."""
        return (f"{self.mean:.2f} ± {self.std:.2f} % ({LEVEL} interval {self.low:.2f} to {self.high:.2f}; "
                f"min {self.minimum:.2f}, max {self.maximum:.2f})")


@dataclass
class SeedGroup:
    """The complete runs of one configuration and protocol (two seeds or more)."""
    rows: list[Row]
    final: Spread
    best: Spread

    @property
    def label(self) -> str:
        """``lenet5 / single / mnist: optim.lr=0.1``: the configuration, without the seed."""
        first = self.rows[0]
        # the seeds' own values, and the commits they ran (the group may span versions of the code), are not it
        differs = [d for d in first.differs if not d.startswith(("seed=", "code="))]
        return f"{first.model} / {first.strategy} / {first.data}" + (f": {' '.join(differs)}" if differs else "")

    @property
    def seeds(self) -> list:
        return [r.seed for r in self.rows]

    @property
    def paper(self):
        return self.rows[0].paper

    def gap(self) -> tuple[float, float, float] | None:
        """The mean's gap to the paper's top-1 figure and the interval of that gap (run - paper)."""
        paper = getattr(self.paper, "top1", None)
        if paper is None:
            return None
        return self.final.mean - paper, self.final.low - paper, self.final.high - paper

    def summary(self) -> str:
        """The group in one paragraph, for the console."""
        paper = getattr(self.paper, "top1", None)
        lines = [f"{self.label}, {self.rows[0].protocol}: n = {self.final.n} (seeds {', '.join(map(str, self.seeds))})",
                 f"  final top-1 error {self.final.text()}",
                 f"  best top-1 error  {self.best.text()}"]
        if paper is not None:
            gap, low, high = self.gap()
            lines.append(f"  against {self.paper.paper}, {self.paper.data}, {self.paper.protocol_label} ({paper:g} %): "
                         f"gap {gap:+.2f} (interval {low:+.2f} to {high:+.2f}); "
                         f"final error {self.final.against(paper)}")
        return "\n".join(lines)


def same_configuration(a: Row, b: Row) -> bool:
    """Whether two rows are seeds of one configuration: the same protocol and the same value of every setting
    both runs have (a setting one run lacks came with newer code: that run had its default, as
    ``runs.settings_that_differ`` takes it)."""
    return a.protocol == b.protocol and all(a.configuration[k] == b.configuration[k]
                                            for k in a.configuration.keys() & b.configuration.keys())


def seed_groups(rows: list[Row]) -> list[SeedGroup]:
    """The complete training rows, validated on their whole set, grouped by configuration (less the seed) and
    protocol; groups of two runs or more, in the order of their first run."""
    groups: list[list[Row]] = []
    for row in rows:
        if row.status != "complete" or row.partial or row.top1 is None or row.best_top1 is None:
            continue
        group = next((g for g in groups if all(same_configuration(row, other) for other in g)), None)
        if group is None:
            groups.append([row])
        else:
            group.append(row)
    return [SeedGroup(members, Spread.of([r.top1 for r in members]), Spread.of([r.best_top1 for r in members]))
            for members in groups if len(members) > 1]


def epoch_band(group: SeedGroup, error: str = "top1") -> list[tuple[int, float, float, float]]:
    """Per epoch that every run of the group validated: (epoch, mean, interval low, interval high)."""
    by_run = [{int(h["epoch"]): h[f"val/{error}_err"] for h in r.history if h.get(f"val/{error}_err") is not None}
              for r in group.rows]
    common = sorted(set.intersection(*(set(e) for e in by_run)))
    band = []
    for epoch in common:
        spread = Spread.of([run[epoch] for run in by_run])
        band.append((epoch, spread.mean, spread.low, spread.high))
    return band


def markdown(groups: list[SeedGroup]) -> list[str]:
    """The report's section on the groups of seeds (empty when there are none)."""
    if not groups:
        return []
    lines = ["", "## Seeds", "",
             f"Runs that differ only in their seed, taken together: mean ± standard deviation of the final and the "
             f"best top-1 error, the {LEVEL} interval of the mean (Student's t, n - 1 degrees of freedom), "
             f"min and max; the gap is the mean's (run - paper), with its interval. A claim against the paper is "
             f"\"matches\" when the paper's figure lies inside the interval.", "",
             "| configuration | protocol | n | seeds | final top-1 err % | best top-1 err % | paper top-1 "
             "| gap (interval) | the paper's figure |",
             "|---|---|---:|---|---|---|---:|---|---|"]
    for g in groups:
        paper = getattr(g.paper, "top1", None)
        gap = g.gap()
        gap_text = f"{gap[0]:+.2f} ({gap[1]:+.2f} to {gap[2]:+.2f})" if gap else "-"
        lines.append(f"| {g.label} | {g.rows[0].protocol} | {g.final.n} | {', '.join(map(str, g.seeds))} "
                     f"| {g.final.text()} | {g.best.text()} | {percent(paper)} | {gap_text} "
                     f"| {g.final.against(paper)} |")
    return lines
