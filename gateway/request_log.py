"""Request logs: one structured line per finished request, and the process's log format.

`RequestLog` is a request observer (see `Runtime.observers`). For every request it logs
one record on the `lockgate.requests` logger whose message is a `RequestLine`: the
request's fields (ids, who, what served it, status, tokens, cost, timings, attempts,
policy decisions). `JsonFormatter` writes such a record as one flat JSON object and any
other record as `{"ts", "level", "logger", "message"}`; a plain formatter writes the
readable text of the line instead.

No key is ever logged: the fields come from the finished `Exchange`, which holds no
credentials. Message content (the last user message and the answer text) is logged only
with `telemetry.logs.content: true`, truncated, with secret-looking strings masked.

The process's log setup (stdout, written by a thread) is in `gateway.logsetup`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from gateway.config.model import LogsConfig
from gateway.exchange import Exchange
from gateway.policy.detectors import DETECTORS
from providers.base import CHAT, EMBEDDINGS, RESPONSES

LOGGER_NAME = "lockgate.requests"
CONTENT_LIMIT = 1000
"""Characters kept of each logged message text."""
LABEL_LIMIT = 128
"""Characters kept of values the client chose (alias, agent)."""

log = logging.getLogger(LOGGER_NAME)


class RequestLine:
    """A request log message: its fields for structured output, a readable line for text."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return text_line(self.fields)


class RequestLog:
    """The request observer: one `RequestLine` per finished request (settings read live)."""

    def __init__(self, settings: Callable[[], LogsConfig]) -> None:
        self._settings = settings

    def __call__(self, exchange: Exchange) -> None:
        settings = self._settings()
        if settings.format == "off" or not log.isEnabledFor(logging.INFO):
            return
        fields = request_fields(exchange, content=settings.content)
        write = _json_line_writer()
        if write is not None:
            try:  # the line `JsonFormatter` would make of the record, without making the record
                write(json_line(time.time(), "INFO", LOGGER_NAME, fields))
                return
            except (TypeError, ValueError):
                pass  # not serialisable: the record's path reports it as logging does
        log.info(RequestLine(fields))


def _json_line_writer() -> Callable[[str], None] | None:
    """Where `lockgate serve` writes JSON log lines, when the request log's records would go
    there and nowhere else: then a line is written without a `logging.LogRecord` and the
    logging machinery around it (half of the request log's cost). Any other setup (a handler
    of the application embedding Lockgate, a test's) gets the records as usual."""
    logger: logging.Logger | None = log
    while logger is not None and logger is not logging.root:
        if logger.handlers or logger.filters or not logger.propagate:
            return None
        logger = logger.parent
    handlers = logging.root.handlers
    if len(handlers) != 1 or logging.root.filters:
        return None
    handler = handlers[0]
    write: Callable[[str], None] | None = getattr(handler, "json_lines_to", None)
    if write is None or handler.filters or handler.level > logging.INFO or type(handler.formatter) is not JsonFormatter:
        return None
    return write


def request_fields(exchange: Exchange, *, content: bool = False) -> dict[str, Any]:
    """Everything worth knowing about a finished request, as flat JSON-ready fields."""
    usage = exchange.usage
    outcome = exchange.outcome
    # One clock reading for every timing, so that they add up (a JSON answer's exchange
    # has no end time yet: `elapsed()` reads the clock each time it is called).
    elapsed = exchange.elapsed()
    upstream = outcome.upstream_s + exchange.upstream_wait_s
    fields: dict[str, Any] = {
        "request_id": exchange.request_id,
        "tenant": exchange.tenant.name if exchange.tenant is not None else None,
        "agent": _clip(exchange.agent),
        "api": exchange.api,
        "alias": _clip(exchange.alias),
        "stream": exchange.stream,
        "provider": exchange.provider_name,
        "model": exchange.model_name,
        "status": exchange.status,
        "error_type": exchange.error_type,
        "input_tokens": usage.input_tokens if usage else 0,
        "output_tokens": usage.output_tokens if usage else 0,
        "cached_tokens": usage.cached_tokens if usage else 0,
        "cache_write_tokens": usage.cache_write_tokens if usage else 0,
        "reasoning_tokens": usage.reasoning_tokens if usage else 0,
        "tokens_estimated": bool(usage and usage.estimated),
        "cost_usd": exchange.cost_usd,
        "latency_ms": _ms(elapsed),
        "ttft_ms": _ms(exchange.ttft_s) if exchange.ttft_s is not None else None,
        "upstream_ms": _ms(upstream),
        "overhead_ms": _ms(exchange.overhead(elapsed)),
        "attempts": outcome.attempts,
        "failovers": len(outcome.failovers),
        "attempt_errors": [f"{attempt.provider}/{attempt.model}: {attempt.error}"
                           for attempt in outcome.tries if attempt.error],
        "decisions": list(exchange.decisions),
    }
    if content:
        fields["prompt"] = _loggable(last_user_text(exchange.api, exchange.body))
        fields["answer"] = _loggable(answer_text(exchange.api, exchange.answer))
    return fields


def text_line(fields: dict[str, Any]) -> str:
    """The readable form: `req_... acme/bot chat gpt-x -> openai/gpt-4o 200 812ms tokens=12/30 ...`."""
    who = fields["tenant"] or "-"
    if fields["agent"]:
        who += f"/{fields['agent']}"
    served = f"{fields['provider']}/{fields['model']}" if fields["provider"] else "-"
    parts = [fields["request_id"], who, fields["api"] + (" stream" if fields["stream"] else ""),
             f"{fields['alias'] or '-'} -> {served}", str(fields["status"])]
    if fields["error_type"]:
        parts.append(f"error={fields['error_type']}")
    parts.append(f"{fields['latency_ms']:.0f}ms")
    if fields["ttft_ms"] is not None:
        parts.append(f"ttft={fields['ttft_ms']:.0f}ms")
    parts.append(f"tokens={fields['input_tokens']}/{fields['output_tokens']}"
                 + ("~" if fields["tokens_estimated"] else ""))
    if fields["cost_usd"] is not None:
        parts.append(f"cost=${fields['cost_usd']:.6f}")
    parts.append(f"attempts={fields['attempts']}")
    if fields["failovers"]:
        parts.append(f"failovers={fields['failovers']}")
    if fields["decisions"]:
        parts.append("policies=" + ",".join(fields["decisions"]))
    for key in ("prompt", "answer"):
        if fields.get(key) is not None:
            parts.append(f"{key}={orjson.dumps(fields[key]).decode()}")
    return " ".join(parts)


# -- message content ----------------------------------------------------------------------

def last_user_text(api: str, body: dict[str, Any] | None) -> str | None:
    """The text of the last user message of a request (the input of an embeddings call)."""
    if not isinstance(body, dict):
        return None
    if api == CHAT:
        return _last_user(body.get("messages"))
    if api == RESPONSES:
        given = body.get("input")
        return given if isinstance(given, str) else _last_user(given)
    if api == EMBEDDINGS:
        given = body.get("input")
        if isinstance(given, list) and all(isinstance(item, str) for item in given):
            return "\n".join(given)
        return given if isinstance(given, str) else None
    return None


def answer_text(api: str, answer: Any) -> str | None:
    """The text of a JSON answer (Chat Completions choice 0, or Responses output messages)."""
    if not isinstance(answer, dict):
        return None
    if api == CHAT:
        choices = answer.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            return _text_of(message.get("content")) if isinstance(message, dict) else None
        return None
    if api == RESPONSES:
        output = answer.get("output")
        if not isinstance(output, list):
            return None
        texts = [_text_of(item.get("content")) for item in output
                 if isinstance(item, dict) and item.get("type") == "message"]
        return "\n".join(text for text in texts if text) or None
    return None


def _last_user(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return None


def _text_of(content: Any) -> str | None:
    """A message's text: a string, or the text parts of a content list joined."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return None
    texts = [part["text"] for part in content
             if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return "\n".join(texts) if texts else None


def _loggable(text: str | None) -> str | None:
    """Truncated, then with anything that looks like a secret masked (logs outlive requests)."""
    if text is None:
        return None
    clipped = text if len(text) <= CONTENT_LIMIT else text[:CONTENT_LIMIT] + "…"
    for detector in DETECTORS.values():
        clipped = detector.pattern.sub(_masker(detector.name, detector.validate), clipped)
    return clipped


def _masker(name: str, validate: Callable[[str], bool] | None) -> Callable[[Any], str]:
    def mask(match: Any) -> str:
        found: str = match.group(0)
        return f"[{name}]" if validate is None or validate(found) else found
    return mask


_CONTROL = str.maketrans({code: "?" for code in (*range(32), 127)})


def _clip(value: str | None) -> str | None:
    """A value the client chose, short and on one line (a text log line cannot be forged)."""
    return value[:LABEL_LIMIT].translate(_CONTROL) if value is not None else None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# -- the process's logging ----------------------------------------------------------------

class JsonFormatter(logging.Formatter):
    """One JSON object per record; a request record's fields are spread into it."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, RequestLine):
            message, fields = "request", record.msg.fields
        else:
            message, fields = record.getMessage(), {}
        extra: dict[str, Any] = {}
        if record.exc_info:
            extra["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            extra["stack"] = self.formatStack(record.stack_info)
        return json_line(record.created, record.levelname, record.name, fields, message, extra)


def json_line(created: float, level: str, logger: str, fields: dict[str, Any], message: str = "request",
              extra: dict[str, Any] | None = None) -> str:
    """One JSON log line: time, level, logger and message first, then the fields."""
    entry: dict[str, Any] = {
        "ts": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
        "level": level,
        "logger": logger,
        "message": message,
    }
    entry.update(fields)
    if extra:
        entry.update(extra)
    return orjson.dumps(entry, default=str).decode()
