"""Hot reload: the config file, the policy files and the price file, watched by polling.

A change is picked up within `interval_s`; SIGHUP and `POST /admin/reload` reload at
once. Every path goes through `Runtime.reload`, which validates the whole bundle before
swapping it in, so a broken file keeps the running version.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config

if TYPE_CHECKING:
    from gateway.runtime import Runtime

log = logging.getLogger("lockgate.reload")
Fingerprint = tuple[tuple[str, int, int], ...]


def watched_files(config: Config) -> list[Path]:
    files = [path for path in (config.path, config.pricing.file) if path is not None]
    directory = config.policies_dir
    if directory is not None and directory.is_dir():
        files += sorted(path for path in directory.iterdir() if path.suffix in (".yaml", ".yml"))
    return files


def fingerprint(config: Config) -> Fingerprint:
    marks = []
    for path in watched_files(config):
        try:
            stat = path.stat()
        except OSError:
            marks.append((str(path), -1, -1))
        else:
            marks.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


async def watch(runtime: Runtime, interval_s: float = 2.0) -> None:
    """Reload when a watched file changes (a failed reload is retried only on the next change)."""
    seen = await asyncio.to_thread(fingerprint, runtime.snapshot.config)
    while True:
        await asyncio.sleep(interval_s)
        try:
            current = await asyncio.to_thread(fingerprint, runtime.snapshot.config)
            if current != seen:
                seen = current
                log.info("config or policy files changed; reloading")
                await runtime.reload()
        except Exception:
            log.exception("watching the config files failed")
