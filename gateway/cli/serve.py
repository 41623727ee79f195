"""`lockgate serve`: run the gateway."""

from __future__ import annotations

import argparse
import logging

from gateway.bundle import Bundle
from gateway.cli.common import add_config_argument, load_bundle_or_exit
from gateway.config import DEMO_ADMIN_KEY, DEMO_TENANT_KEY


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="run the gateway")
    add_config_argument(parser)
    parser.add_argument("--host", help="address to listen on (default: server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (default: server.port)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from gateway.logsetup import configure_logging, stop_logging  # with the server stack, only needed here

    bundle = load_bundle_or_exit(args.config)
    log_writer = configure_logging(args.log_level, bundle.config.telemetry.logs.format)
    try:
        return _serve(args, bundle)
    finally:
        stop_logging(log_writer)


def _serve(args: argparse.Namespace, bundle: Bundle) -> int:
    if args.workers <= 1:
        from gateway.server import ignore_reloads_until_serving

        ignore_reloads_until_serving()
    config = bundle.config
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    if config.quickstart:
        print("Lockgate quickstart: built-in mock model, SQLite ledger in ./lockgate.db, sample policies.")
        print(f"  OPENAI_BASE_URL=http://{host}:{port}/v1")
        print(f"  OPENAI_API_KEY={DEMO_TENANT_KEY}        (tenant 'demo')")
        print(f"  admin key:     {DEMO_ADMIN_KEY}  (for /admin and /ui)")
        print("  models: " + ", ".join(config.models))
        print("These demo keys are public: use your own config (--config) for anything real.", flush=True)
    print(f"Lockgate starting on http://{host}:{port}" +
          (f" with {args.workers} workers" if args.workers > 1 else ""), flush=True)
    if args.workers > 1:
        if not config.storage.redis_url:
            logging.getLogger("lockgate").warning(
                "%d workers without storage.redis_url: rate limits and budgets are counted per worker",
                args.workers)
        from gateway.workers import supervise

        return supervise(args.config, host, port, args.workers, args.log_level.upper())
    from gateway.server import run  # the server stack is only needed here

    return run(bundle, host, port)
