"""Reading W&B runs back (offline runs, or the local copies of synced ones) with the W&B CLI.

A run that was resumed or evaluated has several folders under one run id: they are joined into one
run, later folders winning for the summary and the config, the validation history merged by step.
"""

import json
import re
from pathlib import Path

from .. import CONF
from ..results.tracking import validation_history, wandb_inspect


def read_part(run_dir: Path) -> dict:
    """One W&B folder: its summary, config, state and the per-epoch validation history."""
    summary = json.loads(wandb_inspect(run_dir, "--summary", "--json"))
    summary.pop("console", None)  # the console's last lines: not needed here
    return {**summary, "history": validation_history(run_dir), "folder": str(run_dir)}


def collect(root: Path) -> list[dict]:
    """Every run under ``root`` in the order they started, the folders of one run id joined."""
    folders = sorted({p.parent for p in root.rglob("run-*.wandb")})
    runs: dict[str, dict] = {}
    for part in sorted((read_part(f) for f in folders), key=lambda r: r.get("start_time") or ""):
        run = runs.setdefault(part["run_id"], {**part, "history": []})
        run["summary"] = {**run["summary"], **part["summary"]}  # later folders (a resume, an evaluation) win
        run["config"] = part["config"] or run["config"]
        run["state"] = part.get("state")
        run["history"] += part["history"]
    for run in runs.values():
        by_step = {h.get("trainer/global_step", i): h for i, h in enumerate(run["history"])}
        run["history"] = [by_step[k] for k in sorted(by_step)]
    return list(runs.values())


# Keys that describe the machine or the bookkeeping, not the experiment: never "what differs" between runs.
NOT_SETTINGS = ("git_commit", "git_dirty", "git_untracked", "hardware", "packages", "paths", "logger", "ckpt_path",
                "trainer.enable_progress_bar", "data.how_to_make", "experiment_name", "compare_with",
                "model.model_name", "strategy.name", "data.name")  # the last three: the report's own columns


def _flatten(config: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _setting(key: str) -> bool:
    return not any(key == k or key.startswith(f"{k}.") for k in NOT_SETTINGS)


def followers() -> dict[str, str]:
    """The settings that copy another one by default (``trainer.devices: ${strategy.devices}``), each with the one it
    copies. Where a run's follower holds its leader's value, the leader says it; where it holds another, it was
    set itself (``trainer.devices=2`` beside ``strategy.devices=auto``), and is a setting of that run."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train")
    found = {}

    def walk(node, prefix=""):
        for key in node:
            name = f"{prefix}{key}"
            if OmegaConf.is_interpolation(node, key):
                copied = re.fullmatch(r"\$\{([\w.]+)\}", str(node._get_node(key)._value()))  # a plain copy of a key
                if copied:
                    found[name] = copied.group(1)
            elif OmegaConf.is_config(node[key]) and not OmegaConf.is_list(node[key]):
                walk(node[key], f"{name}.")

    walk(cfg)
    return found


def settings(config: dict, copies: dict[str, str]) -> dict[str, object]:
    """A run's settings as ``key: value``: its resolved config less the bookkeeping (``NOT_SETTINGS``) and the keys
    that hold the value of the key they copy (``copies``: ``followers()``)."""
    flat = _flatten(config)
    every = {k: v for k, v in flat.items() if not (k in copies and copies[k] in flat and v == flat[copies[k]])}
    # the module's hyperparameters repeat model.* at the top level (model_name, num_classes, ...): once is enough
    return {k: v for k, v in every.items() if _setting(k) and f"model.{k}" not in every}


def configuration(config: dict, copies: dict[str, str]) -> dict[str, str]:
    """What a run is, less its seed (``key: value as JSON``): runs of the same configuration are seeds of one
    experiment, which the report takes together (``seeds.same_configuration``)."""
    return {k: json.dumps(v, sort_keys=True) for k, v in settings(config, copies).items() if k != "seed"}


def settings_that_differ(configs: list[dict]) -> list[dict[str, object]]:
    """For each run, the settings that not every run shares (as ``key: value``).

    Compared on the resolved configs, not on the typed overrides: ``experiment=lenet5_1998`` shows as the
    learning rate, schedule and epochs it set, which is what differs between the runs. A follower set in some runs
    (``trainer.devices=2``) is compared in all, holding its leader's value where it was not set: what ran.
    """
    copies = followers()
    flat = [settings(config, copies) for config in configs]
    for follower, leader in copies.items():
        if any(follower in f for f in flat):
            for f in flat:
                if follower not in f and leader in f:
                    f[follower] = f[leader]
    # a key some runs lack came with a newer version of the code: those runs had its default, not another value
    keys = set.intersection(*(set(f) for f in flat)) if flat else set()
    differ = sorted(k for k in keys if any(f[k] != flat[0][k] for f in flat))
    commits = [c.get("git_commit") for c in configs]
    code = [{"code": f"{c[:7]}{'+changes' if conf.get('git_dirty') else ''}"} if c and len(set(commits)) > 1 else {}
            for c, conf in zip(commits, configs)]  # runs of different code: which commit each ran
    return [{**extra, **{k: f[k] for k in differ}} for f, extra in zip(flat, code)]


def as_override(key: str, value: object) -> str:
    """``key=value`` as it would be typed on the command line."""
    text = json.dumps(value) if isinstance(value, (list, dict)) else ("null" if value is None else str(value))
    return f"{key}={text.replace(' ', '')}"
