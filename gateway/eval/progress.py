"""The progress bar `lockgate eval` draws on stderr while requests run: plain text, `\\r` updates."""

from __future__ import annotations

import sys
from typing import TextIO

from gateway.eval.runner import RunResult

_WIDTH = 30


class ProgressBar:
    """`[#########.........]  12/40  30%  9 correct  1 partial  2 incorrect  1 error`, redrawn in place."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.errors = 0
        self.verdicts = {"correct": 0, "partial": 0, "incorrect": 0}
        self._drawn = 0

    def add(self, result: RunResult) -> None:
        self.done += 1
        self.errors += result.error_kind is not None
        self.verdicts[result.verdict] += 1
        self.draw()

    def draw(self) -> None:
        filled = _WIDTH * self.done // self.total if self.total else _WIDTH
        percent = 100 * self.done // self.total if self.total else 100
        counts = "  ".join(f"{count} {verdict}" for verdict, count in self.verdicts.items())
        errors = f"  {self.errors} error{'' if self.errors == 1 else 's'}" if self.errors else ""
        line = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {self.done}/{self.total} {percent:3d}%  {counts}{errors}"
        self.stream.write("\r" + line.ljust(self._drawn))  # spaces wipe what a longer line left behind
        self._drawn = len(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
