"""The Responses API on providers that only speak Chat Completions shape.

Anthropic, Gemini and the mock translate to and from Chat Completions; this module puts
the Responses API on top of any of them: the Responses request becomes a chat request,
and the chat answer (JSON or chunk stream) becomes a Responses object or event stream.
The translation itself is pure (`providers.responses_chat`); this is only the plumbing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from providers.base import CHAT, UpstreamCall, UpstreamError, UpstreamReply
from providers.responses_chat import (
    ChatToResponsesStream,
    chat_to_responses_response,
    responses_to_chat_request,
)
from providers.sse import SSEEvent

SendChat = Callable[[UpstreamCall], Awaitable[UpstreamReply]]


async def send_responses_via_chat(send_chat: SendChat, call: UpstreamCall) -> UpstreamReply:
    chat_body = responses_to_chat_request(call.body)
    chat_body["model"] = call.model
    chat_call = UpstreamCall(api=CHAT, body=chat_body, model=call.model, stream=call.stream,
                             timeouts=call.timeouts, deadline=call.deadline)
    reply = await send_chat(chat_call)
    if reply.events is None:
        reply.set_json(chat_to_responses_response(reply.json(), call.body))
        return reply
    return UpstreamReply(status=reply.status, headers=reply.headers, events=_responses_events(reply, call.body),
                         closer=reply.close, reported_usage=reply.reported_usage)


async def _responses_events(reply: UpstreamReply, request: dict) -> AsyncIterator[SSEEvent]:
    translator = ChatToResponsesStream(request)
    assert reply.events is not None
    async for event in reply.events:
        if event.is_done:
            break
        chunk = event.json()
        if "error" in chunk:
            raise UpstreamError(str(chunk["error"].get("message", "upstream stream error")), kind="http",
                                retryable=True)
        for event_type, payload in translator.feed(chunk):
            yield SSEEvent.of(payload, event_type)
    if translator.finish_reason is None:
        # Never present a cut stream as a completed response.
        raise UpstreamError("the upstream stream ended before the answer was complete", kind="reset",
                            retryable=True)
    for event_type, payload in translator.finish():
        yield SSEEvent.of(payload, event_type)
