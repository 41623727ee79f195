"""`lockgate check`: validate the config (and its policies); exit 1 on any problem."""

from __future__ import annotations

import argparse

from gateway.cli.common import add_config_argument, load, report


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("check", help="validate the config and policies")
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config, problems = load(args.config)
    if config is None:
        report(problems)
        return 1
    where = args.config or "the bundled quickstart config"
    print(f"ok: {where}: {len(config.providers)} provider(s), {len(config.models)} model(s), "
          f"{len(config.tenants)} tenant(s)")
    return 0
