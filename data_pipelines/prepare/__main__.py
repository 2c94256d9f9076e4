"""``python -m data_pipelines.prepare COMMAND ...``: see ``python -m data_pipelines.prepare --help``."""

import argparse
import sys

from . import imagenet, mnist, resize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_pipelines.prepare",
                                     description="Data sets into the folder layout the trainer reads.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (imagenet, resize, mnist):
        module.register(commands)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
