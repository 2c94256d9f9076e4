"""Everything this tool does with W&B, in one place: online or offline, the logger a run writes to (its id kept
across resumes, a sweep point's group and name), closing it whatever happened, an evaluation's part
(``logger.py``); the run's folders, one per start of a resumed offline run, and reading them back with the W&B
CLI (``folders.py``); the run's provenance, its git state, packages and hardware (``provenance.py``).
``train.py``, ``evaluate.py``, the callbacks and the report call these; nothing else imports ``wandb``.
"""

from .folders import (
    PART_NAME,
    point_links_back,
    run_id_of,
    run_parts,
    validation_history,
    validations_logged,
    wandb_cli,
    wandb_inspect,
)
from .logger import (
    define_summaries,
    finish,
    finish_started,
    folders,
    is_wandb,
    let_go,
    log_evaluation,
    log_missing_validations,
    own_service,
    record_stop,
    run_folder,
    summarize,
    sweep_labels,
    url,
    uses_wandb,
    wandb_logger,
    wandb_offline,
    wandb_online_configured,
    wandb_places,
    where,
)
from .provenance import environment, git_state

__all__ = ["PART_NAME", "define_summaries", "environment", "finish", "finish_started", "folders", "git_state",
           "is_wandb", "let_go", "log_evaluation", "log_missing_validations", "own_service", "point_links_back",
           "record_stop", "run_folder", "run_id_of", "run_parts", "summarize", "sweep_labels", "url", "uses_wandb",
           "validation_history", "validations_logged", "wandb_cli", "wandb_inspect", "wandb_logger", "wandb_offline",
           "wandb_online_configured", "wandb_places", "where"]
