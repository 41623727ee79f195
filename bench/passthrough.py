"""The floor: a minimal aiohttp pass-through proxy, the least any Python gateway does.

It forwards method, path, query, body and end-to-end headers to --upstream over a
pooled keep-alive connection and relays the answer back chunk by chunk as it arrives
(SSE included). No JSON parsing, auth, policy, routing or metering: whatever a real
gateway adds to a request is measured against what this one adds.

    python bench/passthrough.py --port 19100 --upstream http://127.0.0.1:19000
"""

from __future__ import annotations

import argparse

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, web

# Hop-by-hop headers (RFC 9110 7.6.1), and those aiohttp sets itself.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "transfer-encoding", "upgrade", "host", "content-length"})
UPSTREAM: web.AppKey[str] = web.AppKey("upstream", str)
SESSION: web.AppKey[ClientSession] = web.AppKey("session", ClientSession)


async def forward(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP}
    url = request.app[UPSTREAM] + request.path_qs
    try:
        upstream = await request.app[SESSION].request(request.method, url, data=body, headers=headers)
    except (ClientError, TimeoutError) as exc:
        return web.json_response({"error": {"message": f"upstream error: {exc!r}", "type": "upstream_error"}},
                                 status=502)
    async with upstream:
        relayed = {name: value for name, value in upstream.headers.items()
                   if name.lower() not in HOP_BY_HOP or name.lower() == "content-length"}
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=relayed)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():  # whatever has arrived, never buffered
            await response.write(chunk)
        await response.write_eof()
        return response


async def open_session(app: web.Application) -> None:
    # auto_decompress=False: compressed bodies pass through untouched.
    app[SESSION] = ClientSession(connector=TCPConnector(limit=0, keepalive_timeout=60),
                                 timeout=ClientTimeout(total=None, sock_connect=10, sock_read=600),
                                 auto_decompress=False)


async def close_session(app: web.Application) -> None:
    await app[SESSION].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=19100)
    parser.add_argument("--upstream", default="http://127.0.0.1:19000")
    args = parser.parse_args()
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[UPSTREAM] = args.upstream.rstrip("/")
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    import uvloop

    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None, backlog=4096,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
