"""The gateway an eval talks to: a running one (`--gateway URL --key KEY`) or one started
in-process for the run (`--config FILE`, or the quickstart config) and stopped after it.

The in-process gateway is the real server stack (`Runtime`, `create_app`) on a free
port of 127.0.0.1, with the config's own storage, policies and prices, so eval traffic
is metered and governed exactly as production traffic would be. Its key is, in order:
`--key`; the quickstart's demo key; or a key minted for `--tenant` (or the config's
only tenant) into the store and revoked when the run ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.auth import digest, mint_key
from gateway.bundle import Bundle
from gateway.config import DEMO_TENANT_KEY, Config
from gateway.pricing import PriceTable
from gateway.store import KeyRecord

if TYPE_CHECKING:
    from openai import AsyncOpenAI

EVAL_KEY_NAME = "lockgate eval (temporary)"
_SHUTDOWN_S = 2.0


class SetupError(Exception):
    """The eval cannot start: a bad argument, an unknown alias, an unreachable gateway."""


@dataclass(frozen=True, slots=True)
class Target:
    base_url: str
    """The OpenAI base URL: the gateway's root with `/v1`."""
    key: str
    prices: PriceTable


def api_root(url: str) -> str:
    """`http://host:8080` or `http://host:8080/v1/` as the base URL the SDK takes."""
    root = url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


def tenant_for_key(config: Config, tenant: str | None) -> str:
    """The tenant whose temporary key the in-process gateway mints; SetupError if it is unclear."""
    if tenant is not None:
        if tenant not in config.tenants:
            raise SetupError(f"unknown tenant '{tenant}'; the config defines {', '.join(config.tenants) or 'none'}")
        return tenant
    if len(config.tenants) == 1:
        return next(iter(config.tenants))
    raise SetupError("the config has several tenants: pass --tenant NAME (a temporary key is minted for it) "
                     "or --key KEY")


@asynccontextmanager
async def in_process(bundle: Bundle, *, key: str | None = None, tenant: str | None = None
                     ) -> AsyncIterator[Target]:
    """Start the gateway of `bundle` on a free local port; stop it (ledger flushed) on exit."""
    from gateway.app import create_app  # the server stack is only needed when eval starts one
    from gateway.runtime import Runtime

    config = bundle.config
    minted_for = None if key is not None or config.quickstart else tenant_for_key(config, tenant)
    runtime = Runtime(bundle)
    runner = web.AppRunner(create_app(runtime), access_log=None, handler_cancellation=True,
                           shutdown_timeout=_SHUTDOWN_S)
    quiet = _Quiet()
    try:
        await runner.setup()
        record: KeyRecord | None = None
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            if minted_for is not None:
                key = mint_key()
                record = KeyRecord(key_hash=digest(key), tenant=minted_for, name=EVAL_KEY_NAME,
                                   created_at=time.time())
                await runtime.store.add_key(record)
            yield Target(base_url=f"http://{host}:{port}/v1", key=key or DEMO_TENANT_KEY, prices=bundle.prices)
        finally:
            if record is not None:
                await runtime.store.revoke_key(record.key_id)
            await runner.cleanup()
    finally:
        quiet.restore()


async def check_access(client: AsyncOpenAI, aliases: Iterable[str]) -> None:
    """SetupError unless the gateway answers, accepts the key and lets it use every alias."""
    import openai

    try:
        listed = {model.id async for model in client.models.list()}
    except openai.AuthenticationError as exc:
        raise SetupError(f"the gateway refused the key: {exc.message}") from None
    except openai.APIStatusError as exc:
        raise SetupError(f"GET /v1/models answered {exc.status_code}: {exc.message}") from None
    except openai.APIConnectionError as exc:
        raise SetupError(f"cannot reach the gateway at {client.base_url}: {exc}") from None
    missing = [alias for alias in aliases if alias not in listed]
    if missing:
        raise SetupError(f"unknown model alias {', '.join(map(repr, missing))} for this key; "
                         f"it may use {', '.join(sorted(listed)) or 'none'}")


class _Quiet:
    """The in-process gateway logs only errors, so its warnings do not tear the progress bar."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("lockgate")
        self.level = self.logger.level
        self.logger.setLevel(max(self.level, logging.ERROR))

    def restore(self) -> None:
        self.logger.setLevel(self.level)
