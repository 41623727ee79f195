"""Responses API output items that the gates write or rewrite.

A blocked tool-call item is replaced by an assistant message item at the same
output index; in a stream that message arrives as the usual event sequence (item
added, part added, text delta, text done, part done, item done).
"""

from __future__ import annotations

from typing import Any


def message_item(item_id: str, text: str) -> dict[str, Any]:
    """A completed assistant message holding `text`."""
    return {
        "id": item_id,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def message_events(message: dict[str, Any], output_index: int) -> list[dict[str, Any]]:
    """The stream events that deliver `message` at `output_index`; their
    `sequence_number` is None until the gate numbers them."""
    text = message["content"][0]["text"]
    where = {"item_id": message["id"], "output_index": output_index, "content_index": 0}
    empty_part = {"type": "output_text", "text": "", "annotations": []}
    events = [
        {"type": "response.output_item.added", "output_index": output_index,
         "item": {**message, "status": "in_progress", "content": []}},
        {"type": "response.content_part.added", **where, "part": empty_part},
        {"type": "response.output_text.delta", **where, "delta": text, "logprobs": []},
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": message["content"][0]},
        {"type": "response.output_item.done", "output_index": output_index, "item": message},
    ]
    return [{**event, "sequence_number": None} for event in events]


def with_texts(item: dict[str, Any], texts: dict[int, list[str]]) -> dict[str, Any]:
    """A message item whose text parts are replaced by `texts` (content index -> pieces)."""
    content = item.get("content")
    if not isinstance(content, list):
        return item
    parts = [
        {**part, "text": "".join(texts[index])}
        if index in texts and isinstance(part, dict) and part.get("type") == "output_text" else part
        for index, part in enumerate(content)
    ]
    return item if parts == content else {**item, "content": parts}
