"""`lockgate serve` with parts of the request's work switched off, for `--stages` only.

    python bench/variant_serve.py VARIANT serve --config ... --port ...

    full          Lockgate as it is (the same as `python -m gateway serve`)
    no-metering   requests are not metered: no ledger row, metrics or request-log line
    bare          the model-call handler only forwards: body read, one POST through the
                  provider's pooled session, the answer sent back as a new response.
                  Lockgate's server, app, middlewares and runtime are all there; none of
                  the pipeline's stages (auth, checks, policy, limits, routing, metering) runs.

Not a way to run Lockgate: the variants exist to measure what each part costs. The
policy stage is switched off by configuration instead (a tenant without policies).
"""

from __future__ import annotations

import sys
from typing import Any

from aiohttp import web

VARIANTS = ("full", "no-metering", "bare")


def without_metering() -> None:
    from gateway.runtime import Runtime

    def finished(self: Runtime, exchange: Any) -> None:
        return None

    Runtime.finished = finished  # type: ignore[method-assign]


def bare_handler() -> None:
    import gateway.app
    from providers.openai import OpenAIProvider

    async def forward(runtime: Any, request: web.Request, api: str) -> web.StreamResponse:
        target = runtime.snapshot.routes["gpt-4o-mini"].targets[0]
        provider: OpenAIProvider = target.provider
        body = await request.read()
        async with provider.session.post(provider.url(api, target.model), data=body,
                                         headers=provider._headers) as response:
            answer = await response.read()
        return web.Response(body=answer, status=response.status, content_type="application/json")

    gateway.app.handle_model_call = forward  # type: ignore[assignment]


def main() -> int:
    variant, argv = sys.argv[1], sys.argv[2:]
    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {', '.join(VARIANTS)}")
    if variant == "no-metering":
        without_metering()
    elif variant == "bare":
        bare_handler()
    from gateway.cli import main as lockgate

    return lockgate(argv)


if __name__ == "__main__":
    sys.exit(main())
