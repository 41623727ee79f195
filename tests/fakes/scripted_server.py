"""An upstream that answers from a queue, exactly as scripted: for the shapes a hostile or
broken server sends and no well-behaved fake would (calls readable two ways, text after the
end, snapshots carrying calls).

Each POST to `/v1/chat/completions` or `/v1/responses` takes the next reply from
`app[QUEUE]`:
- a dict: a JSON answer;
- bytes: written as they are, as an SSE stream when they start with `event:` or `data:`,
  else as a JSON body;
- a list of `(event name or None, payload)` frames: an SSE stream of them (chat streams
  end with `data: [DONE]`).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from providers.sse import encode

QUEUE: web.AppKey[list[Any]] = web.AppKey("queue", list)


async def _answer(request: web.Request) -> web.StreamResponse:
    await request.read()
    reply = request.app[QUEUE].pop(0)
    if isinstance(reply, dict):
        return web.json_response(reply)
    if isinstance(reply, bytes) and not reply.startswith((b"event:", b"data:")):
        return web.Response(body=reply, content_type="application/json")
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    if isinstance(reply, bytes):
        await response.write(reply)
    else:
        for name, payload in reply:
            await response.write(encode(orjson.dumps(payload), name))
        if request.path.endswith("/chat/completions"):
            await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def create_app() -> web.Application:
    app = web.Application()
    app[QUEUE] = []
    app.router.add_post("/v1/chat/completions", _answer)
    app.router.add_post("/v1/responses", _answer)
    return app
