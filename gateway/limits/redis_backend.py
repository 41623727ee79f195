"""Rate-limit and budget counters in Redis, shared by every replica.

Each operation is one Lua script, so check-and-update is atomic across replicas. Time
comes from Redis itself (`TIME`), so replicas with skewed clocks still agree.
"""

from __future__ import annotations

from typing import Any

from gateway.limits.backend import BudgetState, BudgetUnseeded

PREFIX = "lockgate:"

# KEYS[1] tat key; ARGV: cost, limit, period_s, adjust (1 = never refuse)
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost, limit, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + cost * period / limit
if ARGV[4] == '1' then
  if new_tat < now then new_tat = now end
else
  local allow_at = new_tat - period
  if now < allow_at then return tostring(allow_at - now) end
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil((new_tat - now + period) * 1000) + 1000)
return '0'
"""

# KEYS[1] spent, KEYS[2] reserved; ARGV: amount, budget, ttl_s. A missing spend counter
# (Redis restarted, or a new period) is not zero spend: the caller seeds it from the ledger.
_RESERVE = """
local spent_raw = redis.call('GET', KEYS[1])
if not spent_raw then return {'-1', '0', '0'} end
local spent = tonumber(spent_raw)
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0')
local amount, budget = tonumber(ARGV[1]), tonumber(ARGV[2])
if spent + reserved + amount > budget then return {'0', tostring(spent), tostring(reserved)} end
redis.call('INCRBYFLOAT', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return {'1', tostring(spent), tostring(reserved + amount)}
"""

# KEYS[1] spent, KEYS[2] reserved; ARGV: reserved, actual, ttl_s
_SETTLE = """
local reserved = tonumber(redis.call('GET', KEYS[2]) or '0') - tonumber(ARGV[1])
if reserved < 0 then reserved = 0 end
redis.call('SET', KEYS[2], tostring(reserved), 'EX', ARGV[3])
if not redis.call('GET', KEYS[1]) then return '0' end  -- lost: the next reservation re-seeds it
local spent = redis.call('INCRBYFLOAT', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return spent
"""


class RedisBackend:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # an optional dependency, needed only with storage.redis_url

        self._redis: Any = redis.from_url(url)
        self._rate = self._redis.register_script(_RATE)
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    async def take_rate(self, key: str, cost: float, limit: float, period_s: float) -> float:
        wait = await self._rate(keys=[PREFIX + key], args=[cost, limit, period_s, 0])
        return float(wait)

    async def adjust_rate(self, key: str, cost: float, limit: float, period_s: float) -> None:
        await self._rate(keys=[PREFIX + key], args=[cost, limit, period_s, 1])

    async def reserve_budget(self, key: str, amount: float, budget: float, ttl_s: float) -> BudgetState | None:
        admitted, spent, reserved = await self._reserve(
            keys=[f"{PREFIX}{key}:spent", f"{PREFIX}{key}:reserved"], args=[repr(amount), repr(budget), int(ttl_s)])
        if int(admitted) < 0:
            raise BudgetUnseeded(key)
        if int(admitted):
            return None
        return BudgetState(float(spent), float(reserved))

    async def settle_budget(self, key: str, reserved: float, actual: float, ttl_s: float) -> float:
        spent = await self._settle(keys=[f"{PREFIX}{key}:spent", f"{PREFIX}{key}:reserved"],
                                   args=[repr(reserved), repr(actual), int(ttl_s)])
        return float(spent)

    async def seed_budget(self, key: str, spent: float, ttl_s: float) -> None:
        await self._redis.set(f"{PREFIX}{key}:spent", repr(spent), ex=int(ttl_s), nx=True)

    async def close(self) -> None:
        await self._redis.aclose()
