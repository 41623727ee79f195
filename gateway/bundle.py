"""Everything the gateway runs on, loaded and validated together: config, policies, prices.

`lockgate check`, `lockgate serve` and every reload go through `load_bundle`, so they
accept and refuse exactly the same things, and a reload either swaps in a complete,
valid bundle or changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config, load_config, quickstart_config
from gateway.policy import PolicySet, load_policies
from gateway.pricing import PriceTable, PricingError
from gateway.yamlsrc import Problem


@dataclass(frozen=True, slots=True)
class Bundle:
    config: Config
    policies: PolicySet
    prices: PriceTable

    @property
    def version(self) -> str:
        return self.policies.version


EMPTY_POLICIES = PolicySet([], "none")


def load_bundle(path: Path | None) -> tuple[Bundle | None, list[Problem]]:
    """Load `path` (or the quickstart config) with its policies and prices, or every problem."""
    if path is None:
        config, problems = quickstart_config(), []
    elif not path.is_file():
        return None, [Problem(str(path), 0, "", "file not found; pass the path of your gateway.yaml")]
    else:
        config, problems = load_config(path)
    if config is None:
        return None, problems
    policies, problems = (load_policies(config.policies_dir) if config.policies_dir is not None
                          else (EMPTY_POLICIES, []))
    try:
        prices = PriceTable.load(config.pricing.models, config.pricing.file,
                                 overrides_source=str(config.path or "<quickstart>"))
    except PricingError as exc:
        problems = [*problems, *exc.problems]
        prices = None
    if policies is not None:
        problems = [*problems, *_unknown_policies(config, policies)]
    if problems or policies is None or prices is None:
        return None, problems
    return Bundle(config=config, policies=policies, prices=prices), []


def _unknown_policies(config: Config, policies: PolicySet) -> list[Problem]:
    known = set(policies.names())
    problems = []
    listing = ", ".join(sorted(known)) or "none loaded"
    for tenant in config.tenants.values():
        key = f"tenants.{tenant.name}.policies"
        for name in tenant.policies:
            if name not in known:
                problems.append(Problem(str(config.path or "<quickstart>"), config.lines.get(key, 0), key,
                                        f"unknown policy '{name}' (loaded from {config.policies_dir}: {listing})"))
    return problems
