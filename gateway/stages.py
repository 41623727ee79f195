"""Stream stages in a row: each event passes through every stage in order.

A stage takes one event and gives back the events to pass on (none, the same one, a
changed one, or several; the policy gate may also give back a held tool call for the
relay to resolve); at the end of the stream each stage may flush what it held, and what
it flushes still passes through the stages after it.
"""

from __future__ import annotations

from typing import Any, Protocol

from providers.sse import SSEEvent


class StreamStage(Protocol):
    def feed(self, event: SSEEvent) -> list[Any]: ...

    def finish(self) -> list[Any]: ...


class StageChain:
    def __init__(self, stages: list[StreamStage]) -> None:
        self.stages = stages

    def feed(self, event: SSEEvent) -> list[Any]:
        return self._through(self.stages, [event])

    def finish(self) -> list[Any]:
        out: list[Any] = []
        for index, stage in enumerate(self.stages):
            out.extend(self._through(self.stages[index + 1:], stage.finish()))
        return out

    @staticmethod
    def _through(stages: list[StreamStage], events: list[Any]) -> list[Any]:
        for stage in stages:
            if len(events) == 1 and isinstance(events[0], SSEEvent):
                events = stage.feed(events[0])
            else:  # anything but an event (a held tool call) passes the later stages untouched
                events = [out for event in events
                          for out in (stage.feed(event) if isinstance(event, SSEEvent) else [event])]
            if not events:
                break
        return events
