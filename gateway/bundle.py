"""Everything the gateway runs on, loaded and validated together: config, policies, prices.

`lockgate check`, `lockgate serve` and every reload go through `load_bundle`, so they
accept and refuse exactly the same things, and a reload either swaps in a complete,
valid bundle or changes nothing.

A refused bundle comes back with every problem that can be found in one pass: a config
that does not validate is still read as far as it goes, so its policies directory, its
prices and the policies its tenants list are checked too, instead of each layer's
mistakes showing up only once the one before it is fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config, quickstart_config
from gateway.config.parse import read_config
from gateway.policy import PolicySet, load_policies
from gateway.policy.loader import policy_files
from gateway.pricing import PriceTable, PricingError
from gateway.yamlsrc import Problem, YamlError, parse_yaml


@dataclass(frozen=True, slots=True)
class Bundle:
    """A validated config with the policies and prices it names: what the gateway runs."""

    config: Config
    policies: PolicySet
    prices: PriceTable
    version: str
    """A hash of everything it was loaded from (config file, policy files, price file):
    any change to any of them is a new version."""


EMPTY_POLICIES = PolicySet([], "none")


def load_bundle(path: Path | None) -> tuple[Bundle | None, list[Problem]]:
    """Load `path` (or the quickstart config) with its policies and prices.

    Returns (bundle, []) or (None, every problem found in the config, its pricing, each
    policy file, and the tenants' policy names).
    """
    if path is None:
        config, problems = quickstart_config(), []
    elif not path.is_file():
        return None, [Problem(str(path), 0, "", "file not found; pass the path of your gateway.yaml")]
    else:
        config, problems = read_config(path)
    if config is None:
        # Not YAML, or not a mapping: there is no telling which policies directory or
        # tenants it meant, so checking further would only guess.
        return None, problems
    if config.policies_dir is not None:
        policies, policy_problems = load_policies(config.policies_dir)
    else:
        policies, policy_problems = EMPTY_POLICIES, []
    prices, price_problems = _load_prices(config)
    known = policies.names() if policies is not None else _policy_names(config.policies_dir)
    dir_refused = any(problem.key == "policies_dir" for problem in problems)
    problems = [*problems, *policy_problems, *price_problems,
                *_unknown_policies(config, known, dir_refused=dir_refused)]
    if problems or policies is None or prices is None:
        return None, problems
    return Bundle(config=config, policies=policies, prices=prices, version=_version(config, policies)), []


def _version(config: Config, policies: PolicySet) -> str:
    digest = hashlib.sha256(policies.version.encode())
    for source in (config.path, config.pricing.file):
        if source is not None:
            with contextlib.suppress(OSError):  # removed since it was read: what was read is the version
                digest.update(b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def _load_prices(config: Config) -> tuple[PriceTable | None, list[Problem]]:
    """The price table of `config`, or None and the problems of its price file and overrides."""
    try:
        return PriceTable.load(config.pricing.models, config.pricing.file,
                               overrides_source=str(config.path or "<quickstart>")), []
    except PricingError as exc:
        return None, exc.problems


def _policy_names(directory: Path | None) -> list[str]:
    """The names the policy files in `directory` define, or appear to define.

    Used when some policy file has problems, so no `PolicySet` was built. A tenant that
    lists a policy whose file is broken is already told about that file's problems; also
    calling the policy "unknown" would send the reader looking for a typo in gateway.yaml
    that is not there. So a file whose YAML does not parse, or that names no policy,
    counts under its file name: docs/policies.md makes that the policy's name by
    convention. A file that does say `policy: NAME` counts under NAME, as when loaded.
    """
    if directory is None or not directory.is_dir():
        return []
    names = set()
    for file in policy_files(directory):
        try:
            data = parse_yaml(file.read_text(encoding="utf-8"), str(file))
        except (YamlError, OSError, UnicodeDecodeError):
            data = None
        name = data.get("policy") if isinstance(data, dict) else None
        names.add(name if isinstance(name, str) and name else file.stem)
    return sorted(names)


def _unknown_policies(config: Config, known: list[str], *, dir_refused: bool) -> list[Problem]:
    """A problem for each policy a tenant lists that is not among `known`.

    `dir_refused` means `policies_dir` is set to a directory that does not exist: that is
    reported already, and which names it would have defined cannot be told, so nothing is
    added here.
    """
    listed = [(tenant.name, name) for tenant in config.tenants.values() for name in tenant.policies]
    if not listed or dir_refused:
        return []
    source = str(config.path or "<quickstart>")
    problems = []
    for tenant, name in listed:
        key = f"tenants.{tenant}.policies"
        if config.policies_dir is None:
            base = config.path.parent if config.path is not None else Path.cwd()
            message = (f"unknown policy '{name}': no policies directory was found (looked for "
                       f"{base / 'policies'}); create it with a file for '{name}', or set "
                       "'policies_dir' to the directory that holds your policy files")
        elif name not in known:
            listing = ", ".join(known) or "none"
            message = (f"unknown policy '{name}' (policies in {config.policies_dir}: {listing}); fix the "
                       f"name or add a file with 'policy: {name}' there")
        else:
            continue
        problems.append(Problem(source, config.lines.get(key, 0), key, message))
    return problems
