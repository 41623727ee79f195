"""Findings: how a failure is named, and the ones found but not fixed yet.

A failure is named in a way that survives edits: for a crash, by the innermost frame of
Lockgate's own code (`gateway/`, `providers/`) it went through; for a broken property,
by the `Violation` kind the target gave it. `signature` is precise (type and function),
`family` groups a module's crashes into one finding.

While a family is in `KNOWN`, the targets tolerate it: a CI run stays green and a long
run keeps looking for *other* failures. Each entry has an `xfail(strict=True)`
regression test in tests/test_fuzz.py that replays the finding (fuzz/findings/<id>.txt
has the input and the traceback); when the fix lands that test passes, which fails
the run: then delete the entry here and the marker there.
"""

from __future__ import annotations

import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN_CODE = ("gateway", "providers")


class Violation(AssertionError):
    """A target's property does not hold; `kind` names which way, for `KNOWN`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind


KNOWN: dict[str, str] = {
    # Every finding so far is fixed: see FIXED in tests/test_fuzz.py for their regression tests.
}
"""family -> finding id (fuzz/findings/<id>.txt)"""


def signature(exc: BaseException) -> str:
    """The precise name of a failure: the violation, or the exception type and function."""
    if isinstance(exc, Violation):
        return f"violation {exc.kind}"
    frame = _innermost_own_frame(exc)
    where = f"{_relative(frame.filename)}:{frame.name}" if frame else "outside Lockgate"
    return f"{type(exc).__name__} in {where}"


def family(exc: BaseException) -> str:
    """The finding a failure belongs to: the violation, or the module that crashed.

    One module trusting the shape of its input fails in many functions and types; that
    is one finding to fix, and it stays one entry here."""
    if isinstance(exc, Violation):
        return f"violation {exc.kind}"
    frame = _innermost_own_frame(exc)
    return f"crash in {_relative(frame.filename)}" if frame else f"{type(exc).__name__} outside Lockgate"


def known(exc: BaseException) -> str | None:
    """The finding id of a known failure, else None."""
    return KNOWN.get(family(exc))


def _innermost_own_frame(exc: BaseException) -> traceback.FrameSummary | None:
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if _own(frame.filename)]
    return frames[-1] if frames else None


def _relative(filename: str) -> str:
    return str(Path(filename).resolve().relative_to(ROOT))


def _own(filename: str) -> bool:
    try:
        relative = Path(filename).resolve().relative_to(ROOT)
    except ValueError:
        return False
    return relative.parts[0] in OWN_CODE
