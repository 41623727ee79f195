"""Anthropic Messages API: pure translators to and from OpenAI Chat Completions.

The adapter (I/O) lives in `providers.anthropic.adapter`; everything here is dicts and
events in, dicts and events out:

- `chat_to_anthropic`: a Chat Completions request -> a Messages request;
- `anthropic_to_chat`: a Message -> a `chat.completion`;
- `AnthropicStreamTranslator`: Messages stream events -> `chat.completion.chunk`s;
- `anthropic_error`: a failed answer -> `UpstreamError` (retryable or not, and when);
- `traits_for`: what a model accepts (sampling parameters, style of thinking).
"""

from providers.anthropic.errors import anthropic_error, stream_error
from providers.anthropic.request import chat_to_anthropic
from providers.anthropic.response import anthropic_to_chat, usage_to_chat
from providers.anthropic.stream import AnthropicStreamTranslator
from providers.anthropic.traits import ModelTraits, traits_for

__all__ = [
    "AnthropicStreamTranslator",
    "ModelTraits",
    "anthropic_error",
    "anthropic_to_chat",
    "chat_to_anthropic",
    "stream_error",
    "traits_for",
    "usage_to_chat",
]
