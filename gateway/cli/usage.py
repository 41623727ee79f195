"""`lockgate usage`: the usage report as a table (or JSON), read from the ledger."""

from __future__ import annotations

import argparse
import json
import sys
import time

from gateway.cli.common import add_config_argument, load_or_exit, with_store
from gateway.reporting import DEFAULT_SINCE, GROUP_KEYS, default_grouping, format_table, parse_window, usage_report
from gateway.store import LedgerQuery


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("usage", help="requests, tokens, cost, errors and latency per tenant")
    parser.add_argument("--tenant", help="one tenant (default: all)")
    parser.add_argument("--since", default=DEFAULT_SINCE, help="24h, 7d, an ISO time or unix seconds")
    parser.add_argument("--until", default=None, help="default: now")
    parser.add_argument("--by", choices=GROUP_KEYS,
                        help="group rows by this (default: tenant, or model with --tenant)")
    parser.add_argument("--json", action="store_true", help="print the JSON answer of /admin/usage")
    add_config_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    try:
        since, until = parse_window(args.since, args.until, time.time())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.tenant is not None and args.tenant not in config.tenants:
        print(f"error: unknown tenant '{args.tenant}'", file=sys.stderr)
        return 1
    rows = with_store(config, lambda store: store.ledger_rows(LedgerQuery(tenant=args.tenant, since=since,
                                                                           until=until)))
    report = usage_report(rows, tenant=args.tenant, since=since, until=until,
                          by=args.by or default_grouping(args.tenant))
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0
