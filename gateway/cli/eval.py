"""`lockgate eval DATASET --model ALIAS [...]`: run a test set through the gateway, score it,
and compare aliases (and the policies they run under) before traffic is switched.

Exit codes: 0 done; 1 some alias's accuracy is under `--min-accuracy`; 2 a bad dataset or
argument, an unknown alias or an unreachable gateway (nothing is scored then).
docs/eval.md is the reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path
from typing import Any

from gateway.bundle import Bundle, load_bundle
from gateway.cli.common import add_config_argument
from gateway.eval.dataset import Case, DatasetError, load_dataset
from gateway.eval.html import render_html
from gateway.eval.progress import ProgressBar
from gateway.eval.report import below, build_report, format_table, percent
from gateway.eval.runner import Settings, run_eval
from gateway.eval.target import SetupError, Target, api_root, check_access, in_process
from gateway.pricing import PriceTable
from gateway.reporting import iso_utc

BAD_INPUT = 2
BELOW_THRESHOLD = 1


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("eval", help="score model aliases and policies on a test set",
                                 description="Send every case of DATASET through the gateway to each --model "
                                             "alias, score the answers, and report accuracy, latency, cost, "
                                             "errors and policy decisions per alias and category.")
    parser.add_argument("dataset", type=Path, help="YAML or JSONL file of cases (docs/eval.md)")
    parser.add_argument("--model", "-m", dest="models", action="append", required=True, metavar="ALIAS",
                        help="a model alias to evaluate; repeat to compare several")
    parser.add_argument("--gateway", metavar="URL", help="a running gateway (needs --key); default: start one "
                        "in-process from --config or the quickstart config")
    parser.add_argument("--key", help="the tenant key to call the gateway with")
    add_config_argument(parser)
    parser.add_argument("--tenant", help="in-process only: mint a temporary key for this tenant")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    parser.add_argument("--repeat", type=int, default=1, help="send every case K times (default 1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one request may take (default 120)")
    parser.add_argument("--judge", metavar="ALIAS", help="the alias that grades 'match: judge' cases")
    parser.add_argument("--min-accuracy", type=float, metavar="RATIO",
                        help="exit 1 when any alias scores below this (0..1)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the HTML report here")
    parser.add_argument("--json", type=Path, dest="json_path", metavar="FILE", help="write every result as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        _check_arguments(args)
        cases = load_dataset(args.dataset)
        _check_judge(cases, args.judge)
        report = asyncio.run(evaluate(args, cases, _target(args)))
    except DatasetError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in the dataset; nothing was sent.", file=sys.stderr)
        return BAD_INPUT
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT
    _write(args, report)
    print(format_table(report), end="")
    failing = below(report, args.min_accuracy) if args.min_accuracy is not None else []
    if failing:
        listing = ", ".join(f"{alias} ({percent(report['summary']['aliases'][alias]['accuracy'])})"
                            for alias in failing)
        print(f"accuracy below {percent(args.min_accuracy)}: {listing}", file=sys.stderr)
        return BELOW_THRESHOLD
    return 0


async def evaluate(args: argparse.Namespace, cases: list[Case], target: AbstractAsyncContextManager[Target]
                   ) -> dict[str, Any]:
    try:
        from openai import AsyncOpenAI  # only `lockgate eval` needs the SDK
    except ImportError:
        raise SetupError("lockgate eval sends its requests with the official SDK: pip install openai") from None

    aliases = tuple(dict.fromkeys(args.models))
    settings = Settings(aliases=aliases, concurrency=args.concurrency, repeat=args.repeat, judge=args.judge)
    async with target as gateway:
        client = AsyncOpenAI(base_url=gateway.base_url, api_key=gateway.key, max_retries=0, timeout=args.timeout)
        try:
            await check_access(client, [*aliases, *([args.judge] if args.judge else [])])
            progress = None if args.no_progress else ProgressBar(len(cases) * len(aliases) * args.repeat)
            started = time.time()
            results = await run_eval(client, cases, settings, gateway.prices, progress.add if progress else None)
            if progress is not None:
                progress.close()
        finally:
            await client.close()
    where = args.gateway or f"in-process ({args.config or 'quickstart config'})"
    return build_report(results, aliases, dataset=str(args.dataset), gateway=where, judge=args.judge,
                        repeat=args.repeat, started_at=iso_utc(started), finished_at=iso_utc(time.time()))


def _check_arguments(args: argparse.Namespace) -> None:
    if args.gateway and not args.key:
        raise SetupError("--gateway needs --key: the tenant key to call it with")
    if args.gateway and args.tenant:
        raise SetupError("--tenant mints a key for the in-process gateway; with --gateway pass --key")
    if args.concurrency < 1 or args.repeat < 1:
        raise SetupError("--concurrency and --repeat must be at least 1")
    if args.timeout <= 0:
        raise SetupError("--timeout must be a positive number of seconds")
    if args.min_accuracy is not None and not 0 <= args.min_accuracy <= 1:
        raise SetupError("--min-accuracy is a ratio from 0 to 1, e.g. 0.8")
    for option, path in (("--out", args.out), ("--json", args.json_path)):
        if path is not None and not path.resolve().parent.is_dir():
            raise SetupError(f"{option} {path}: the directory {path.resolve().parent} does not exist")


def _check_judge(cases: list[Case], judge: str | None) -> None:
    graded = [str(case.number) for case in cases if case.match == "judge"]
    if graded and judge is None:
        raise SetupError(f"case(s) {', '.join(graded)} use 'match: judge': pass --judge ALIAS to grade them")


def _target(args: argparse.Namespace) -> AbstractAsyncContextManager[Target]:
    """The running gateway (priced with --config's table if given), or one to start in-process."""
    if args.gateway:
        prices = _bundle(args.config).prices if args.config is not None else PriceTable.load()
        return nullcontext(Target(api_root(args.gateway), args.key, prices))
    return in_process(_bundle(args.config), key=args.key, tenant=args.tenant)


def _bundle(path: Path | None) -> Bundle:
    bundle, problems = load_bundle(path)
    if bundle is None:
        raise SetupError("the config is not valid:\n" + "\n".join(f"  {problem}" for problem in problems))
    return bundle


def _write(args: argparse.Namespace, report: dict[str, Any]) -> None:
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.out is not None:
        args.out.write_text(render_html(report), encoding="utf-8")
