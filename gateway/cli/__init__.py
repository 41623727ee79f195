"""`lockgate` (and `python -m gateway`): the command line.

Each subcommand lives in its own module and registers its arguments here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import approvals, check, keys, policy, serve, usage
from gateway.cli import eval as eval_command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lockgate", description="An OpenAI-compatible gateway that "
                                     "governs what models do and meters what they cost.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.register(commands)
    check.register(commands)
    keys.register(commands)
    usage.register(commands)
    policy.register(commands)
    approvals.register(commands)
    eval_command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
