"""Run the fuzz targets for a while and write what they find to fuzz/findings/.

    .venv/bin/python fuzz/run.py --minutes 5                      # every target, round robin
    .venv/bin/python fuzz/run.py --minutes 2 --targets gemini_stream,tool_gate
    .venv/bin/python fuzz/run.py --minutes 3 --http               # also the end-to-end HTTP targets

Each round gives one target up to `--examples` new examples (Hypothesis, random seed,
its example database in fuzz/.hypothesis so a later run starts from what an earlier one
learned). A round ends at its first new failure, shrunk to a minimal input and written
to fuzz/findings/<family>.txt with its traceback; a failure written there is tolerated
from then on, so the next rounds look for other ones. Exit status 1 when this run found
something new.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from fuzz.known import family, signature
from fuzz.targets import TARGETS, Target

HERE = Path(__file__).resolve().parent
FINDINGS = HERE / "findings"
SIGNATURE_LINE = "signature: "


class Findings:
    """fuzz/findings/: one file per family, one section per distinct signature."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.seen = {line[len(SIGNATURE_LINE):].strip() for path in directory.glob("*.txt")
                     for line in path.read_text().splitlines() if line.startswith(SIGNATURE_LINE)}
        self.new: list[str] = []

    def tolerates(self, exc: BaseException) -> bool:
        return signature(exc) in self.seen

    def record(self, target: str, exc: BaseException) -> None:
        name = signature(exc)
        if name in self.seen:
            return
        self.seen.add(name)
        self.new.append(name)
        path = self.directory / f"{_slug(family(exc))}.txt"
        report = traceback.format_exception(exc)
        with path.open("a") as out:
            out.write(f"{'=' * 100}\n{SIGNATURE_LINE}{name}\nfamily: {family(exc)}\ntarget: {target}\n"
                      f"found: {time.strftime('%Y-%m-%d %H:%M:%S')}\n\n{''.join(report)}\n")
        print(f"  NEW {name} -> {path}", flush=True)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_round(target: Target, examples: int, findings: Findings, database: DirectoryBasedExampleDatabase) -> None:
    def tolerant(value: Any) -> None:
        try:
            target.check(value)
        except Exception as exc:
            if not findings.tolerates(exc):
                raise

    configured = settings(max_examples=examples, deadline=None, database=database, print_blob=True,
                          suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    try:
        configured(given(target.strategy)(tolerant))()
    except Exception as exc:
        for failure in exc.exceptions if isinstance(exc, ExceptionGroup) else [exc]:
            findings.record(target.name, failure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--targets", help="comma-separated names (default: all); --list shows them")
    parser.add_argument("--examples", type=int, default=300, help="new examples per target per round")
    parser.add_argument("--http", action="store_true", help="also the end-to-end HTTP targets")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--findings", type=Path, default=FINDINGS)
    args = parser.parse_args(argv)
    if args.list:
        for target in TARGETS:
            print(f"{target.name:22} {target.doc}")
        print("with --http also http_request and http_query (fuzz/http_target.py)")
        return 0
    wanted = set(args.targets.split(",")) if args.targets else None
    findings = Findings(args.findings)
    database = DirectoryBasedExampleDatabase(HERE / ".hypothesis")
    deadline = time.monotonic() + args.minutes * 60
    rounds = 0
    with http_targets(args.http) as http:
        targets = [target for target in [*TARGETS, *http] if wanted is None or target.name in wanted]
        while time.monotonic() < deadline and targets:
            target = targets[rounds % len(targets)]
            started = time.monotonic()
            run_round(target, args.examples, findings, database)
            print(f"round {rounds:4d} {target.name:22} {args.examples} examples in "
                  f"{time.monotonic() - started:6.1f}s", flush=True)
            rounds += 1
    print(f"\n{rounds} rounds; new findings this run: {len(findings.new)}")
    for name in findings.new:
        print(f"  {name}")
    return 1 if findings.new else 0


@contextmanager
def http_targets(enabled: bool) -> Iterator[list[Target]]:
    """The end-to-end targets, bound to a running gateway and fake upstreams, when asked for."""
    if not enabled:
        yield []
        return
    from fuzz import http_target
    from tests.harness import BackgroundLoop

    loop = BackgroundLoop()
    try:
        with http_target.running_stack(loop) as stack:
            yield [Target("http_request", http_target.REQUESTS, partial(http_target.check_request, stack),
                          "bad requests over HTTP: never a 5xx"),
                   Target("http_query", http_target.QUERIES, partial(http_target.check_query, stack),
                          "odd query strings on the usage and admin endpoints: never a 5xx")]
    finally:
        loop.stop()


if __name__ == "__main__":
    sys.exit(main())
