"""The one-screen summary printed at the end of a run."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from .paper_comparison import coverage, percent
from .tracking import run_id_of


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
        *([("EMA val top-1 error (final)", percent(result["val_ema/top1_err"], " %")),
           ("EMA val top-5 error (final)", percent(result["val_ema/top5_err"], " %"))]
          if result.get("val_ema/top1_err") is not None else []),
        (f"{'EMA ' if result.get('reported') == 'val_ema' else ''}val top-1 error (best)",
         percent(result["best/top1_err"], " %")),
        *([("validated on", f"{coverage(result.get('val/images'), result.get('val/set_images'))} (partial)")]
          if coverage(result.get("val/images"), result.get("val/set_images")) else []),
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
        parts = result.get("wandb_parts") or [result["wandb_dir"]]
        wandb_dir = Path(result["wandb_dir"]).parent
        if len(parts) > 1:  # a resumed run: one folder per start, one run id; the upload joins them
            run_id = run_id_of(parts[-1])
            upload = f"wandb sync --id {run_id} {' '.join(parts)}"
            lines.append(f"W&B run:         {result['wandb_dir']}   (offline, {len(parts)} parts, one per start; "
                         f"browse: wandb leet {wandb_dir}; upload: {upload})")
        else:
            lines.append(f"W&B run:         {result['wandb_dir']}   (offline; browse: wandb leet {wandb_dir}; "
                         f"upload: wandb sync {result['wandb_dir']})")
    print("\n".join(lines), flush=True)
