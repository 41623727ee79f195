"""`lockgate check`: validate the config, its policies and prices; exit 1 on any problem."""

from __future__ import annotations

import argparse

from gateway.bundle import load_bundle
from gateway.cli.common import add_config_argument, report


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("check", help="validate the config and policies")
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    bundle, problems = load_bundle(args.config)
    if bundle is None:
        report(problems)
        return 1
    config = bundle.config
    where = args.config or "the bundled quickstart config"
    print(f"ok: {where}: {len(config.providers)} provider(s), {len(config.models)} model(s), "
          f"{len(config.tenants)} tenant(s), {len(bundle.policies.names())} policies; "
          f"version {bundle.version}")
    return 0
