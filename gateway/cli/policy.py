"""`lockgate policy test CASES.yaml`: run policy test cases against the configured policies."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.common import add_config_argument, load_bundle_or_exit
from gateway.policy import run_cases


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("policy", help="test policies")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    test = actions.add_parser("test", help="run test cases (a request or tool call in, the expected decision out)")
    test.add_argument("cases", type=Path, nargs="+", help="YAML files of cases")
    add_config_argument(test)
    test.set_defaults(run=run_test)


def run_test(args: argparse.Namespace) -> int:
    bundle = load_bundle_or_exit(args.config)
    failed = False
    for cases in args.cases:
        report = run_cases(bundle.policies, cases)
        print(report.summary())
        failed |= not report.passed
    return 1 if failed else 0
