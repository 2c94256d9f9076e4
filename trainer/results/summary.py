"""The one-screen summary printed at the end of a run."""

from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from .paper_comparison import percent


def run_title(cfg: DictConfig) -> str:
    """``lenet5 / single / digits``: the run's name in its opening block and its closing summary."""
    return f"{cfg.model.model_name} / {cfg.strategy.name} / {cfg.data.name}"


def print_summary(cfg: DictConfig, result: dict[str, Any]) -> None:
    """Prints the run's numbers as a table, then its files as plain lines that copy and paste whole."""
    table = Table(title=run_title(cfg), show_header=False, title_justify="left")
    minutes, seconds = divmod(result["wall_s"], 60)
    for row in [
        ("val top-1 error (final)", percent(result["val/top1_err"], " %")),
        ("val top-5 error (final)", percent(result["val/top5_err"], " %")),
        ("val top-1 error (best)", percent(result["best/top1_err"], " %")),
        ("epochs / steps", f"{result['epochs']} / {result['global_step']}"),
        ("wall time", f"{int(minutes)} min {seconds:.0f} s"),
    ]:
        table.add_row(*row)
    Console().print(table)
    lines = [f"run folder:      {result['output_dir']}",
             f"best checkpoint: {result['best_ckpt'] or '-'}",
             f"last checkpoint: {result['last_ckpt'] or '-'}"]
    if result.get("wandb_url"):
        lines.append(f"W&B run:         {result['wandb_url']}")
    elif result["wandb_dir"]:
        lines.append(f"W&B run:         {result['wandb_dir']}   (offline; browse: wandb leet {result['wandb_dir']}; "
                     f"upload: wandb sync {result['wandb_dir']})")
    print("\n".join(lines), flush=True)
