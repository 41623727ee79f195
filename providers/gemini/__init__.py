"""Google Gemini (`generateContent`) behind the gateway's Chat Completions shape.

Pure translators, one direction per module: `request` (chat request -> Gemini body, with
`options` for tools and generation settings, `output` for `response_format` and `schema`
for JSON Schema), `response`
(Gemini answer -> chat completion), `stream` (Gemini SSE events -> chat chunks) and
`errors` (Gemini error answers -> `UpstreamError`). `toolcalls` is how thought
signatures survive the trip through OpenAI clients inside tool call ids.
"""

from providers.gemini.errors import gemini_error
from providers.gemini.request import chat_to_gemini
from providers.gemini.response import gemini_to_chat, usage_to_chat
from providers.gemini.schema import to_gemini_schema
from providers.gemini.stream import GeminiStreamTranslator
from providers.gemini.toolcalls import join_tool_call_id, split_tool_call_id

__all__ = [
    "GeminiStreamTranslator",
    "chat_to_gemini",
    "gemini_error",
    "gemini_to_chat",
    "join_tool_call_id",
    "split_tool_call_id",
    "to_gemini_schema",
    "usage_to_chat",
]
