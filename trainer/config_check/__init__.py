"""Every value a user can set, checked in one place before anything starts (no folder, logger or process):
each setting's own rule (``rules.py``: ``RULES``), the settings that go together (``combinations.py``) and the
data folder (``data_root.py``). A bad value stops the command with ``error: <key>=<value> is not allowed: <what is
allowed>`` and exit status 2.
tests/trainer/test_config_check.py finds every numeric key of every composed config and requires a rule for it.
"""

from omegaconf import DictConfig

from .combinations import check_combinations
from .data_root import check_data_root, check_digits_root
from .rules import PRECISIONS, RULES, ConfigValueError, Rule, check_rules

__all__ = ["PRECISIONS", "RULES", "ConfigValueError", "Rule", "check_data_root", "check_digits_root", "check_values"]


def check_values(cfg: DictConfig) -> None:
    """Raises ``ConfigValueError`` for the first setting, or combination of settings, that cannot run."""
    check_rules(cfg)
    check_combinations(cfg)
