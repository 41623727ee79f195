"""Micro-benchmark of the policy engine (not a test): one request against 20 rules.

    .venv/bin/python bench/policy_bench.py [--seconds 2]

Reports microseconds per evaluation (best of five rounds) for the request stage
(fresh facts each time, as the gateway builds them per request), for the same rules
with every condition left to the CEL runtime (what the native fast path saves), for
the shipped default policy, for one returned tool call, and for streaming the text of
a typical answer through the response redactor. Target: under 50 µs for the request
stage.

The 20 rules are bench/policies/bench.yaml, the policy the end-to-end benchmark
(bench/run.py) runs Lockgate with. They are deliberately heavy: ten conditions over ten different variables
(the whole conversation included), two tool lists and two detector scans of every
message. All ten conditions are in the native subset (docs/policies.md, "Conditions"):
they read plain Python values, where the runtime would first have values converted
for it (~1 µs per string, ~9 µs for this conversation).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.policy import RequestFacts, TenantPolicies, load_policies

BENCH = Path(__file__).resolve().parent
BODY = json.loads((BENCH / "bodies" / "chat.json").read_text())
ANSWER = ("The Bosch GSR 18V-55 is in stock in Lyon for 189 EUR, and delivery before Friday is possible "
          "if you order today. A similar model is the Makita DDF485, also with two 5 Ah batteries. ") * 4


def five_rounds(seconds: float, run: Callable[[], object]) -> list[float]:
    """µs per call in each of five rounds, after a warm-up (like timeit, take the best:
    the machine's other load only ever adds time)."""
    for _ in range(200):
        run()
    rounds = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 5:
            for _ in range(100):
                run()
            count += 100
        rounds.append((time.perf_counter() - start) / count * 1e6)
    return rounds


def _measure(label: str, seconds: float, run: Callable[[], object]) -> float:
    rounds = five_rounds(seconds, run)
    micros = min(rounds)
    print(f"{label:<48} {micros:8.1f} µs  (median {sorted(rounds)[2]:.1f})")
    return micros


def _runtime_only(tenant: TenantPolicies) -> TenantPolicies:
    """The same rules with every condition left to the CEL runtime (no native fast path)."""
    def without_native(rule):  # type: ignore[no-untyped-def]
        return dataclasses.replace(rule, when=dataclasses.replace(rule.when, native=None)) if rule.when else rule

    return TenantPolicies([dataclasses.replace(policy, rules=tuple(map(without_native, policy.rules)))
                           for policy in tenant.policies])


def measure(seconds: float) -> dict[str, float]:
    """Microseconds per evaluation of each measured case (printed as it goes)."""
    policies, problems = load_policies(BENCH / "policies")
    assert policies is not None, problems
    tenant = policies.for_tenant(["bench"])
    rules = sum(len(p.rules) for p in tenant.policies)

    def facts() -> RequestFacts:
        return RequestFacts(tenant="acme", agent="support", alias="gpt-4o-mini", api="chat", body=BODY,
                            headers={"x-team": "day", "authorization": "Bearer x"})

    verdict = tenant.evaluate_request(facts())
    assert verdict.outcome == "allow", verdict
    print(f"{rules} rules (bench/policies/bench.yaml); request stage outcome: {verdict.outcome}")
    results = {"rules": float(rules)}
    results["request_us"] = _measure(f"request stage ({rules} rules, fresh facts)", seconds,
                                     lambda: tenant.evaluate_request(facts()))
    runtime = _runtime_only(tenant)
    assert runtime.evaluate_request(facts()).outcome == verdict.outcome
    results["request_runtime_only_us"] = _measure("  same, conditions on the CEL runtime", seconds,
                                                  lambda: runtime.evaluate_request(facts()))
    one = facts()
    results["tool_call_us"] = _measure(
        "tool call (lookup_product, arguments read)", seconds,
        lambda: tenant.evaluate_tool_call(one, "lookup_product", '{"query": "drill", "city": "Lyon"}'))
    shipped, _ = load_policies(BENCH.parent / "policies")
    if shipped is not None:
        default = shipped.for_tenant([])
        results["default_request_us"] = _measure("request stage, shipped policies/default.yaml", seconds,
                                                 lambda: default.evaluate_request(facts()))
    pieces = [ANSWER[i:i + 8] for i in range(0, len(ANSWER), 8)]

    def stream_text() -> None:
        text_filter = tenant.response_text_filter(one)
        assert text_filter is not None
        for piece in pieces:
            text_filter.feed(piece)
        text_filter.flush()

    answer = _measure(f"response text, {len(pieces)} deltas, 5 detectors", seconds, stream_text)
    results["response_text_us_per_delta"] = answer / len(pieces)
    print(f"  = {answer / len(pieces):.2f} µs per delta")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    results = measure(args.seconds)
    print("target: request stage < 50 µs:", "met" if results["request_us"] < 50 else "NOT met")


if __name__ == "__main__":
    main()
