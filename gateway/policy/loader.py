"""Loading a policy directory into an immutable `PolicySet`, or the reasons it failed.

Hot reload relies on this never raising for a bad file: every problem in every file
comes back as a `Problem`, and the caller keeps serving the previous set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from gateway.policy.engine import TenantPolicies
from gateway.policy.model import Policy
from gateway.policy.schema import parse_policy
from gateway.yamlsrc import Problem, YamlError, parse_yaml

DEFAULT_POLICY = "default"


class PolicySet:
    """Every loaded policy by name, with a content hash as its version."""

    def __init__(self, policies: Sequence[Policy], version: str) -> None:
        self._policies = MappingProxyType({policy.name: policy for policy in policies})
        self.version = version
        self._tenants: dict[tuple[str, ...], TenantPolicies] = {}

    def names(self) -> list[str]:
        return sorted(self._policies)

    def get(self, name: str) -> Policy | None:
        return self._policies.get(name)

    def for_tenant(self, policy_names: Sequence[str]) -> TenantPolicies:
        """The compiled rules of `default` (if it exists) then `policy_names`, in order.

        Cached per tuple of names. Raises KeyError for a name that is not loaded: the
        config check reports it first, so it only happens if a reload removed a policy
        a tenant still lists, and failing beats silently dropping its rules.
        """
        key = tuple(policy_names)
        tenant = self._tenants.get(key)
        if tenant is None:
            ordered = [DEFAULT_POLICY] if DEFAULT_POLICY in self._policies else []
            ordered += [name for name in key if name not in ordered]
            missing = [name for name in ordered if name not in self._policies]
            if missing:
                raise KeyError(f"unknown policy {', '.join(missing)}; loaded: {', '.join(self.names())}")
            tenant = TenantPolicies([self._policies[name] for name in ordered])
            self._tenants[key] = tenant
        return tenant


def policy_files(directory: Path) -> list[Path]:
    """The policy files of a directory: not subdirectories such as tests/, and not
    hidden files (editors' backups and lock files)."""
    return sorted(path for path in directory.iterdir()
                  if path.is_file() and path.suffix in (".yaml", ".yml") and not path.name.startswith("."))


def load_policies(directory: Path) -> tuple[PolicySet | None, list[Problem]]:
    """Load every policy file in `directory`: (the new set, []) or (None, problems)."""
    if not directory.is_dir():
        return None, [Problem(str(directory), 0, "policies_dir",
                              "the policies directory does not exist; create it or fix 'policies_dir'")]
    problems: list[Problem] = []
    policies: list[Policy] = []
    digest = hashlib.sha256()
    seen: dict[str, str] = {}
    for path in policy_files(directory):
        try:
            text = path.read_text(encoding="utf-8")
            data = parse_yaml(text, str(path))
        except YamlError as exc:
            problems.append(exc.problem)
            continue
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(path), 0, "", f"cannot read the file: {exc}"))
            continue
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        policy, file_problems = parse_policy(data, str(path))
        problems.extend(file_problems)
        name = data.get("policy") if isinstance(data, dict) else None
        if isinstance(name, str) and name in seen:
            problems.append(Problem(str(path), 1, "policy", f"policy '{name}' is also defined in "
                                    f"{seen[name]}; policy names must be unique"))
        elif isinstance(name, str):
            seen[name] = str(path)
        if policy is not None:
            policies.append(policy)
    if problems:
        return None, problems
    return PolicySet(policies, digest.hexdigest()[:16]), []
