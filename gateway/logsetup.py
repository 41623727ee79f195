"""The process's logging: every record to stdout, as JSON or text, written by a thread.

A record is formatted where it is logged and handed to a writer thread as a string, so
writing never blocks the event loop (even on a stdout nobody reads) and no record is
copied. The request log (`gateway.request_log`) is one such record per request, so this
path is kept short: no queue-handler copy, no handler lock.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import TextIO

from gateway.request_log import LOGGER_NAME, JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FLUSH_INTERVAL_S = 0.05


class LineWriter:
    """Lines written to a stream in batches by a daemon thread.

    The thread wakes on a timer, not per line: waking it for every request would hand the
    GIL back and forth once per request, which costs the event loop more than the writing.
    """

    def __init__(self, stream: TextIO, interval_s: float = FLUSH_INTERVAL_S) -> None:
        self._stream = stream
        self._interval = interval_s
        self._lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lockgate-log-writer", daemon=True)
        self._thread.start()

    def put(self, line: str) -> None:
        self._lines.append(line)  # atomic under the GIL; the thread swaps the list out

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush()
        self._flush()

    def _flush(self) -> None:
        lines, self._lines = self._lines, []
        if not lines:
            return
        try:
            self._stream.write("\n".join(lines) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stdout must not take the gateway down

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, waiting at most `timeout_s` (a stdout nobody reads must not hang exit)."""
        self._stop.set()
        self._thread.join(timeout_s)


class LineHandler(logging.Handler):
    """Formats in the caller's thread and hands the line to the writer."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer
        self.json_lines_to: Callable[[str], None] = writer.put
        """Where the request log writes its lines itself while this handler's formatter is
        `JsonFormatter` (see `gateway.request_log`)."""

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        # No handler lock: formatting is reentrant and the writer's queue is thread-safe.
        if self.filter(record):
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.put(self.format(record))
        except Exception:
            self.handleError(record)


def configure_logging(level: str, log_format: str) -> LineWriter:
    """Root logging to stdout, JSON or text; `stop_logging` the returned writer at exit."""
    skip_unused_record_fields()
    writer = LineWriter(sys.stdout)
    handler = LineHandler(writer)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The request log is an access log: `telemetry.logs.format: off` turns it off, not --log-level.
    logging.getLogger(LOGGER_NAME).setLevel(logging.INFO)
    return writer


def skip_unused_record_fields() -> None:
    """Stop filling record fields that neither format prints (the logging HOWTO's
    "Optimization" knobs): finding the caller walks the stack on every record, and the
    request log writes one record per request."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def stop_logging(writer: LineWriter, timeout_s: float = 5.0) -> None:
    writer.stop(timeout_s)
