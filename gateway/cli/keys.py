"""`lockgate keys create|list|revoke`: virtual keys minted into the store (hashed)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from gateway.auth import digest, mint_key
from gateway.cli.common import add_config_argument, load_or_exit, with_store
from gateway.store import KeyRecord


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("keys", help="mint, list and revoke tenant keys")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="mint a key for a tenant (shown once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a label for the key")
    add_config_argument(create)
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="list minted keys (never the keys themselves)")
    listing.add_argument("--tenant")
    add_config_argument(listing)
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="revoke a minted key by its id")
    revoke.add_argument("key_id", help="the id shown by 'lockgate keys list'")
    add_config_argument(revoke)
    revoke.set_defaults(run=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    if args.tenant not in config.tenants:
        known = ", ".join(config.tenants) or "none"
        print(f"error: unknown tenant '{args.tenant}'; tenants are defined in the config (known: {known})",
              file=sys.stderr)
        return 1
    key = mint_key()
    record = KeyRecord(key_hash=digest(key), tenant=args.tenant, name=args.name, created_at=time.time())
    with_store(config, lambda store: store.add_key(record))
    print(key)
    print(f"key id {record.key_id} for tenant '{args.tenant}'. Store it now: it is not shown again.",
          file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    records = with_store(config, lambda store: store.list_keys(args.tenant))
    print(f"{'KEY ID':<14}{'TENANT':<20}{'NAME':<20}{'CREATED (UTC)':<22}STATUS")
    for record in records:
        created = datetime.fromtimestamp(record.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        status = "revoked" if record.revoked_at else "active"
        print(f"{record.key_id:<14}{record.tenant:<20}{record.name:<20}{created:<22}{status}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    record = with_store(config, lambda store: store.revoke_key(args.key_id))
    if record is None:
        print(f"error: no single active key with id '{args.key_id}'", file=sys.stderr)
        return 1
    print(f"revoked key {record.key_id} of tenant '{record.tenant}'")
    return 0
