"""Virtual keys -> tenants, and admin keys.

Keys are never stored in clear: the config holds `sha256:<hex>` and the store holds
the hashes of minted keys. A presented key is hashed once, looked up by its hash, and
confirmed with a constant-time comparison. Looking up by hash leaks nothing useful to
a timing attacker: the attacker cannot steer the hash of what they send.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping

from gateway.config import TenantConfig

KEY_PREFIX = "lg-"


def mint_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer <key>` or `x-api-key: <key>`."""
    authorization = headers.get("Authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    value = headers.get("x-api-key")
    return value.strip() if value and value.strip() else None


class KeyRing:
    """Which tenant a key belongs to, and whether a key is an admin key."""

    def __init__(self, tenants: Mapping[str, TenantConfig], admin_hashes: Iterable[str],
                 stored: Mapping[str, str] | None = None) -> None:
        by_hash: dict[str, tuple[str, TenantConfig]] = {}
        for key_hash, tenant_name in (stored or {}).items():
            if tenant_name in tenants:
                by_hash[key_hash] = (key_hash, tenants[tenant_name])
        for tenant in tenants.values():
            for key_hash in tenant.key_hashes:
                by_hash[key_hash] = (key_hash, tenant)
        self._by_hash = by_hash
        self._admin = tuple(admin_hashes)

    def tenant(self, key: str | None) -> TenantConfig | None:
        if not key:
            return None
        presented = digest(key)
        entry = self._by_hash.get(presented)
        if entry is None or not hmac.compare_digest(entry[0], presented):
            return None
        return entry[1]

    def is_admin(self, key: str | None) -> bool:
        if not key:
            return False
        presented = digest(key)
        found = False
        for admin_hash in self._admin:
            found |= hmac.compare_digest(admin_hash, presented)
        return found
