"""What the subcommands share: loading the config and reporting its problems."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from gateway.bundle import Bundle, load_bundle
from gateway.config import Config, load_config, quickstart_config
from gateway.store import Store, open_store
from gateway.yamlsrc import Problem

T = TypeVar("T")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=None,
                        help="gateway.yaml (default: the bundled quickstart config)")


def load(path: Path | None) -> tuple[Config | None, list[Problem]]:
    if path is None:
        return quickstart_config(), []
    if not path.is_file():
        return None, [Problem(str(path), 0, "", "file not found; pass the path of your gateway.yaml")]
    return load_config(path)


def load_or_exit(path: Path | None) -> Config:
    config, problems = load(path)
    if config is None:
        report(problems)
        sys.exit(1)
    return config


def load_bundle_or_exit(path: Path | None) -> Bundle:
    """The config with its policies and prices: what `serve` runs on."""
    bundle, problems = load_bundle(path)
    if bundle is None:
        report(problems)
        sys.exit(1)
    return bundle


def with_store(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` against the config's store, opened for it and closed after."""
    async def main() -> T:
        store = open_store(config.storage.url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()
    return asyncio.run(main())


def report(problems: list[Problem]) -> None:
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
