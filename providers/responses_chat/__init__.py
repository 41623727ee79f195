"""Translation between the OpenAI Responses API and Chat Completions.

Targets that speak only Chat Completions shapes serve `POST /v1/responses` through these
pure functions: the request goes down as a chat request (`responses_to_chat_request`),
and the chat answer comes back as a Responses `response` (`chat_to_responses_response`)
or, when streamed, as Responses events (`ChatToResponsesStream`).
"""

from providers.responses_chat.request import responses_to_chat_request
from providers.responses_chat.response import (
    IdFactory,
    chat_to_responses_response,
    counting_ids,
    random_id,
)
from providers.responses_chat.stream import ChatToResponsesStream

__all__ = [
    "ChatToResponsesStream",
    "IdFactory",
    "chat_to_responses_response",
    "counting_ids",
    "random_id",
    "responses_to_chat_request",
]
