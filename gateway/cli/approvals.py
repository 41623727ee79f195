"""`lockgate approvals list | show ID | approve ID | deny ID [--reason R]`.

Decisions go straight to the store; a running gateway holding the call sees them
within a second (it re-reads pending approvals), on every replica.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from gateway.approvals import STATUSES, Approvals, undecidable
from gateway.cli.common import add_config_argument, load_or_exit, with_store
from gateway.metrics import Metrics
from gateway.store import ApprovalRecord, Store


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("approvals", help="list, approve and deny held tool calls and requests")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="approvals (pending by default)")
    listing.add_argument("--status", choices=(*STATUSES, "all"), default="pending")
    listing.add_argument("--tenant")
    listing.add_argument("--json", action="store_true")
    add_config_argument(listing)
    listing.set_defaults(run=run_list)
    show = actions.add_parser("show", help="one approval, in full")
    show.add_argument("id")
    add_config_argument(show)
    show.set_defaults(run=run_show)
    for name, approve in (("approve", True), ("deny", False)):
        decide = actions.add_parser(name, help=f"{name} a pending approval")
        decide.add_argument("id")
        decide.add_argument("--reason")
        decide.add_argument("--by", default="cli", help="who decided (recorded as decided_by)")
        add_config_argument(decide)
        decide.set_defaults(run=run_decide, approve=approve)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def run_list(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    status = None if args.status == "all" else args.status
    records = with_store(config, lambda store: store.list_approvals(status, args.tenant, 1000))
    if args.json:
        print(json.dumps({"object": "list", "data": [record.public() for record in records]}, indent=2))
        return 0
    print(f"{'ID':<30}{'STATUS':<10}{'TENANT':<14}{'RULE':<28}{'WHAT':<32}{'EXPIRES (UTC)'}")
    for record in records:
        # One line per approval, whatever the summary holds (it quotes the request's messages).
        what = f"tool {record.tool_name}" if record.tool_name else " ".join((record.summary or "").split())[:30]
        print(f"{record.id:<30}{record.status:<10}{record.tenant:<14}{record.policy + '/' + record.rule:<28}"
              f"{what:<32}{_when(record.expires_at)}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    record = with_store(config, lambda store: store.get_approval(args.id))
    if record is None:
        print(f"error: no approval {args.id}", file=sys.stderr)
        return 1
    print(json.dumps(record.public(), indent=2))
    return 0


def run_decide(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)

    async def decide(store: Store) -> tuple[ApprovalRecord | None, Any]:
        record = await Approvals(store, Metrics()).decide(args.id, args.approve, args.by, args.reason)
        return record, (None if record else await store.get_approval(args.id))

    record, current = with_store(config, decide)
    if record is None:
        print(f"error: {undecidable(args.id, current)}", file=sys.stderr)
        return 1
    print(f"{record.id} {record.status} by {record.decided_by} at {_when(record.decided_at or time.time())}")
    return 0
