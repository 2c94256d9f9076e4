"""``python -m trainer.evaluate``: score a checkpoint under a paper's protocol (``trainer/tools/evaluate``)."""

import sys

from data_pipelines.protocols import EVAL_PROTOCOLS

from .cli import did_you_mean, override_syntax_error, override_value


def protocol_error(overrides: list[str]) -> str | None:
    """A ``protocol=`` that is not one of the test protocols, in one line with the nearest: said before the heavy
    imports (Lightning, torch, DALI: seconds), so the answer is immediate."""
    value = override_value(overrides, "protocol")
    if value is None or value in EVAL_PROTOCOLS:
        return None
    return (f"protocol={value} is not a test protocol{did_you_mean('protocol', value, EVAL_PROTOCOLS)} (the "
            f"protocols: {', '.join(EVAL_PROTOCOLS)})")


if __name__ == "__main__":
    if wrong := protocol_error(sys.argv[1:]) or override_syntax_error(sys.argv[1:]):
        print(f"error: {wrong}", file=sys.stderr)
        sys.exit(1)
    from .tools.evaluate import main

    sys.exit(main())
