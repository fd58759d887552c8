"""Lua scripts for the Redis backends, and the one object that runs them.

Each script is loaded once per server (``register_script``: ``EVALSHA``, ``SCRIPT LOAD`` on
``NOSCRIPT``) and runs atomically. Times come from Redis ``TIME`` so every process shares one clock;
tests may pass an explicit time instead (the first ARGV; empty means ``TIME``).

One clock rules expiry: every TTL a script sets is relative to the script's own ``now``
(``PEXPIRE``, never ``EXPIREAT``), so an absolute deadline the client computed (a period's end, a
spend day's retention) expires the same span after ``now`` whichever clock ``now`` came from. With
Redis ``TIME`` that is exactly ``EXPIREAT``; with an injected clock (tests) keys no longer vanish
because the injected date is not Redis's date. The client computes periods and spend days from a
clock synchronised to Redis ``TIME`` (``governance.clock.RedisClock``), so a host whose clock is
skewed still writes into the period Redis is in.

Key layout (``P`` = ``GovernanceConfig.key_prefix``, default ``hyperion``). Multi-key scripts need all
their keys in one Redis Cluster slot, so each structure that a script updates atomically shares one
hash tag:

==================================  ===========  ======================================================
key                                 type         contents
==================================  ===========  ======================================================
``{P:ledger}:b:<scope>:<id>:<pid>``  hash         one budget in one period (``pid`` e.g. ``d2026-11-24``):
                                                  ``s`` spent, ``r`` reserved (nano-USD integers),
                                                  ``x`` exhausted-alert fired, ``t<frac>`` threshold fired.
                                                  Expires 1 day after the period ends (``total``: never)
``{P:ledger}:res:<request_id>``      hash         a reservation: ``a`` amount, ``s`` state (``r`` held,
                                                  ``s`` settled, ``l`` released, ``x`` expired), ``k`` its
                                                  budget keys. Expires ttl + grace after creation
``{P:ledger}:resq``                  zset         held reservations scored by expiry (ms); every ledger
                                                  script first releases up to 64 expired ones
``{P:ledger}:spend:<day>:<dim>``     hash         spend report counters, field = code + group (``r``
                                                  requests, ``p`` prompt tokens, ``o`` completion tokens,
                                                  ``c`` cost and ``s`` saved in nano-USD). Expires after
                                                  ``spend_retention_days``
``{P:ledger}:spend:days``            set          days that have spend counters
``{P:ledger}:spendq``                list         spend records not yet folded into the day hashes
                                                  (about ``FOLD_AT``: see ``_SPEND``); never expires.
                                                  ``...:spendq:bad``: records a fold could not read
``{P:rl}:<scope>:<id>:<rpm|tpm>``    string       GCRA theoretical arrival time (µs); expires when the
                                                  bucket is full again (nothing to remember)
``P:anom:<scope>:<id>``              hash         spend-rate state (current and previous bucket, EWMA
                                                  baseline, bucket count); expires after 7 idle days
``P:anom:<scope>:<id>:cool:<kind>``  string       alert cooldown (``SET NX PX``)
==================================  ===========  ======================================================

Why one ``{P:ledger}`` slot: a reservation must check and hold the key's, team's, user's and global
budgets all-or-none, and settle must commit spend and report counters exactly once, so every budget
of a namespace lives in one slot (one shard). A ledger call is one short script, so a shard carries
tens of thousands of requests per second; a deployment that needs more splits namespaces
(``key_prefix``) per tenant. Rate limits are likewise one ``{P:rl}`` slot (a request's key, team and
route limits are checked and consumed together), independent of the ledger. Anomaly state is one key
per subject (single-key scripts), so it spreads over the cluster. The sweep inside the ledger
scripts touches reservation keys it read from the zset, not from ``KEYS``: they are in the same slot
by construction, which is what Redis Cluster requires.

Amounts are integers in nano-USD (1e-9 USD): ``HINCRBY`` is exact int64 (floats drift: 0.1 + 0.2).
The limit comparisons run on Lua doubles: exact below 2^53 nano-USD (about 9 million USD per budget
and period); above that they may be off by a few nano-USD.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import GovernanceStoreError

# -- shared snippets -------------------------------------------------------------------------------

_NOW_MS = """
local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

_NOW_US = """
local function now_us(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# Every numeric argument is checked before the first write: Redis does not roll back a script that fails
# half-way, so a bad number found by HINCRBY after the hold was taken would leave ``reserved`` wrong.
# ``int_args(i, j)``: ARGV[i..j] must be whole numbers in [0, 2^53) (exact in Lua's doubles, and in int64).
_INT_ARGS = """
local function int_args(first, last)
  for i = first, last do
    local v = tonumber(ARGV[i])
    if v == nil or v ~= math.floor(v) or v < 0 or v >= 9007199254740992 then
      error({err = 'ERR hyperion: argument ' .. i .. ' must be a whole number in [0, 2^53), got ' .. tostring(ARGV[i])})
    end
  end
end
"""

# Expire ``key`` at the absolute Unix second ``exp`` (0 = never) as seen from the script's ``now`` (ms):
# a relative PEXPIRE, at least one second, so the client's and the script's clocks never disagree.
_EXPIRE_AT = """
local function expire_at(key, exp, now)
  if exp > 0 then
    local ttl = exp * 1000 - now
    if ttl < 1000 then ttl = 1000 end
    redis.call('PEXPIRE', key, string.format('%.0f', ttl))
  end
end
"""

# Release held reservations whose time is up: give their amount back to every budget they hold.
# ``unhold`` gives a hold back without ever taking ``r`` below zero (clamped, whatever happened before).
_SWEEP = """
local function unhold(c, amount)
  local held = tonumber(redis.call('HGET', c, 'r') or '0')
  if amount > held then amount = held end
  if amount > 0 then redis.call('HINCRBY', c, 'r', -amount) end
end
local function sweep(resq, rprefix, now, grace)
  local ids = redis.call('ZRANGEBYSCORE', resq, '-inf', now, 'LIMIT', 0, 64)
  for _, id in ipairs(ids) do
    local rk = rprefix .. id
    local v = redis.call('HMGET', rk, 's', 'a', 'k')
    if v[1] == 'r' then
      local amt = tonumber(v[2])
      for c in string.gmatch(v[3] or '', '[^\\n]+') do
        if redis.call('EXISTS', c) == 1 then unhold(c, amt) end
      end
      redis.call('HSET', rk, 's', 'x')
      redis.call('PEXPIRE', rk, grace)
    end
    redis.call('ZREM', resq, id)
  end
end
"""

# Spend report counters go through one list, ``{P:ledger}:spendq``: the script that settles a request
# (or records a saving) appends the request's record in the same atomic step, so a record exists
# exactly when its settlement does, and returns the queue's length. At FOLD_AT a store runs FOLD (a
# script of its own, in the background: a fold never fails a settlement), which folds the queued
# records into the day hashes summing equal fields first: a route's, model's or team's row is one
# HINCRBY per batch instead of one per request (a settlement wrote ~35 HINCRBY; now ~5 per record
# folded). FOLD reads and trims the list in one step, so a record is counted exactly once, whichever
# process folds it; a spend report folds what is left before it reads. A record FOLD cannot read (not
# one this version wrote) goes to ``spendq:bad``, untouched. The fold touches the hashes its records
# name, not KEYS: they share the queue's ``{P:ledger}`` slot (checked), as the sweep's reservations do.
# A record: cmsgpack of day, expire_at, requests, prompt tokens, completion tokens, cost and saved
# (nano-USD), then (hash, group) pairs.
_SPEND = """
local SPEND_CODES = {'r', 'p', 'o', 'c', 's'}
-- the record's values, or nil when it is not a record of this layout in this namespace
local function spend_record(r, ns)
  local ok, v = pcall(function() return {cmsgpack.unpack(r)} end)
  if not ok or type(v[1]) ~= 'string' or #v < 7 or (#v - 7) % 2 ~= 0 then return nil end
  for c = 2, 7 do
    local x = v[c]
    if type(x) ~= 'number' or x ~= math.floor(x) or x < 0 or x >= 9007199254740992 then return nil end
  end
  for j = 8, #v do
    if type(v[j]) ~= 'string' then return nil end
    if j % 2 == 0 and string.sub(v[j], 1, #ns) ~= ns then return nil end
  end
  return v
end
local function fold_spend(q, days, now, maxn)
  local recs = redis.call('LRANGE', q, 0, maxn - 1)
  local nrec = #recs
  if nrec == 0 then return 0 end
  local ns = string.sub(q, 1, #q - #'spendq')
  local sums, exps, order, seen = {}, {}, {}, {}
  for _, r in ipairs(recs) do
    local v = spend_record(r, ns)
    if v == nil then
      redis.call('RPUSH', q .. ':bad', r)
    else
      if not seen[v[1]] then
        seen[v[1]] = true
        redis.call('SADD', days, v[1])
      end
      local exp = v[2]
      for j = 8, #v - 1, 2 do
        local h, grp = v[j], v[j + 1]
        local t = sums[h]
        if t == nil then
          t = {}
          sums[h] = t
          order[#order + 1] = h
          exps[h] = exp
        elseif exp > exps[h] then
          exps[h] = exp
        end
        for c = 1, 5 do
          local x = v[2 + c]
          if x ~= 0 then
            local f = SPEND_CODES[c] .. grp
            t[f] = (t[f] or 0) + x
          end
        end
      end
    end
  end
  for _, h in ipairs(order) do
    for f, x in pairs(sums[h]) do redis.call('HINCRBY', h, f, string.format('%.0f', x)) end
    expire_at(h, exps[h], now)
  end
  redis.call('LTRIM', q, nrec, -1)
  return nrec
end
-- KEYS[first .. first+m-1]: the day's per-dimension hashes, KEYS[first+m]: the set of days,
-- KEYS[first+m+1]: the queue; ARGV[g .. g+m-1]: the group in each dimension -> the queue's length
local function add_spend(first, m, g, day, exp, req, pt, ct, cost, saved)
  local rec = {day, exp, req, pt, ct, cost, saved}
  for j = 0, m - 1 do
    rec[#rec + 1] = KEYS[first + j]
    rec[#rec + 1] = ARGV[g + j]
  end
  return redis.call('RPUSH', KEYS[first + m + 1], cmsgpack.pack(unpack(rec)))
end
"""

#: queued spend records at which a store folds the queue (in the background, a script of its own: a
#: fold can never fail a settlement)
FOLD_AT = 64

# -- ledger ------------------------------------------------------------------------------------------

#: KEYS: resq, res:<id>, budget counters...
#: ARGV: now_ms|'', request_id, amount, ttl_ms, grace_ms, res_prefix, then per counter: limit, expire_at
#: -> {1} held | {2, state} the id already has a reservation | {0, i, spent, reserved, first_refusal}
RESERVE = (
    _NOW_MS
    + _INT_ARGS
    + _EXPIRE_AT
    + _SWEEP
    + """
int_args(3, 5)
int_args(7, #ARGV)
local now = now_ms(ARGV[1])
local amount = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local grace = tonumber(ARGV[5])
sweep(KEYS[1], ARGV[6], now, grace)
local st = redis.call('HGET', KEYS[2], 's')
if st then return {2, st} end
local n = #KEYS - 2
for i = 1, n do
  local c = KEYS[i + 2]
  local v = redis.call('HMGET', c, 's', 'r')
  local spent = tonumber(v[1] or '0')
  local held = tonumber(v[2] or '0')
  if spent + held + amount > tonumber(ARGV[5 + 2 * i]) then
    local first = redis.call('HSETNX', c, 'x', 1)
    expire_at(c, tonumber(ARGV[6 + 2 * i]), now)
    return {0, i, spent, held, first}
  end
end
local held = {}
for i = 1, n do
  local c = KEYS[i + 2]
  redis.call('HINCRBY', c, 'r', amount)
  expire_at(c, tonumber(ARGV[6 + 2 * i]), now)
  held[i] = c
end
redis.call('HSET', KEYS[2], 'a', amount, 's', 'r', 'k', table.concat(held, '\\n'))
redis.call('PEXPIRE', KEYS[2], ttl + grace)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
return {1}
"""
)

#: KEYS: resq, res:<id>, n budget counters, then with spend: m spend hashes, spend days set, spend queue
#: ARGV: now_ms|'', request_id, actual, grace_ms, res_prefix, n, m, spend_expire_at, day, saved,
#:       prompt_tokens, completion_tokens, then n threshold specs ("label=nano,label=nano"), m groups
#: -> {1, late, {spent...}, {"i:label"...}, spend records queued} | {0, state or 'missing'}
SETTLE = (
    _NOW_MS
    + _INT_ARGS
    + _EXPIRE_AT
    + _SWEEP
    + _SPEND
    + """
int_args(3, 4)
int_args(6, 8)
int_args(10, 12)
local now = now_ms(ARGV[1])
local grace = tonumber(ARGV[4])
sweep(KEYS[1], ARGV[5], now, grace)
local v = redis.call('HMGET', KEYS[2], 's', 'a')
local st = v[1]
if not st then return {0, 'missing'} end
if st ~= 'r' and st ~= 'x' then return {0, st} end
local amount = tonumber(v[2])
local actual = tonumber(ARGV[3])
local n = tonumber(ARGV[6])
local m = tonumber(ARGV[7])
local spent_out = {}
local fired = {}
for i = 1, n do
  local c = KEYS[2 + i]
  if redis.call('EXISTS', c) == 1 then
    if st == 'r' then unhold(c, amount) end
    local spent = redis.call('HINCRBY', c, 's', actual)
    spent_out[i] = spent
    for label, thr in string.gmatch(ARGV[12 + i], '([^=,]+)=([^,]+)') do
      if spent >= tonumber(thr) and redis.call('HSETNX', c, 't' .. label, 1) == 1 then
        fired[#fired + 1] = i .. ':' .. label
      end
    end
  else
    spent_out[i] = -1
  end
end
local queued = 0
if m > 0 then
  queued = add_spend(3 + n, m, 13 + n, ARGV[9], tonumber(ARGV[8]), 1, tonumber(ARGV[11]), tonumber(ARGV[12]),
                     actual, tonumber(ARGV[10]))
end
redis.call('HSET', KEYS[2], 's', 's')
redis.call('PEXPIRE', KEYS[2], grace)
redis.call('ZREM', KEYS[1], ARGV[2])
local late = 0
if st == 'x' then late = 1 end
return {1, late, spent_out, fired, queued}
"""
)

#: KEYS: resq, res:<id>, budget counters...   ARGV: now_ms|'', request_id, grace_ms, res_prefix
#: -> 1 released | 0 nothing held under that id
RELEASE = (
    _NOW_MS
    + _INT_ARGS
    + _SWEEP
    + """
int_args(3, 3)
local now = now_ms(ARGV[1])
local grace = tonumber(ARGV[3])
sweep(KEYS[1], ARGV[4], now, grace)
local v = redis.call('HMGET', KEYS[2], 's', 'a')
if v[1] ~= 'r' then return 0 end
local amount = tonumber(v[2])
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then unhold(KEYS[i], amount) end
end
redis.call('HSET', KEYS[2], 's', 'l')
redis.call('PEXPIRE', KEYS[2], grace)
redis.call('ZREM', KEYS[1], ARGV[2])
return 1
"""
)

#: KEYS: resq, budget counters...   ARGV: now_ms|'', grace_ms, res_prefix
#: -> {{spent, reserved}...} (after releasing expired reservations)
STATUS = (
    _NOW_MS
    + _SWEEP
    + """
local now = now_ms(ARGV[1])
sweep(KEYS[1], ARGV[3], now, tonumber(ARGV[2]))
local out = {}
for i = 2, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  out[i - 1] = {tonumber(v[1] or '0'), tonumber(v[2] or '0')}
end
return out
"""
)

#: KEYS: resq, n budget hashes | ARGV: now_ms|'', grace_ms, res_prefix
#: -> {spent} per budget as it was: ``s`` set to 0 and the fired alerts (``x``, ``t<frac>``) forgotten;
#: ``r`` (reservations in flight) stays, so they settle against the fresh period
RESET = (
    _NOW_MS
    + _SWEEP
    + """
local now = now_ms(ARGV[1])
sweep(KEYS[1], ARGV[3], now, tonumber(ARGV[2]))
local out = {}
for i = 2, #KEYS do
  out[i - 1] = tonumber(redis.call('HGET', KEYS[i], 's') or '0')
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HSET', KEYS[i], 's', 0)
    for _, f in ipairs(redis.call('HKEYS', KEYS[i])) do
      if f == 'x' or string.sub(f, 1, 1) == 't' then redis.call('HDEL', KEYS[i], f) end
    end
  end
end
return out
"""
)

#: KEYS: m spend hashes, spend days set, spend queue  -> spend records queued
#: ARGV: now_ms|'', m, expire_at, day, requests, pt, ct, cost, saved, groups...
SPEND = (
    _NOW_MS
    + _INT_ARGS
    + _EXPIRE_AT
    + _SPEND
    + """
int_args(2, 3)
int_args(5, 9)
local m = tonumber(ARGV[2])
return add_spend(1, m, 10, ARGV[4], tonumber(ARGV[3]), tonumber(ARGV[5]), tonumber(ARGV[6]),
                 tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]))
"""
)

#: KEYS: spend queue, spend days set.  ARGV: now_ms|'', most records -> records folded (0: the queue is empty)
FOLD = (
    _NOW_MS
    + _INT_ARGS
    + _EXPIRE_AT
    + _SPEND
    + """
int_args(2, 2)
return fold_spend(KEYS[1], KEYS[2], now_ms(ARGV[1]), tonumber(ARGV[2]))
"""
)

# -- rate limits (GCRA) -----------------------------------------------------------------------------

#: KEYS: one bucket per limit.  ARGV: now_us|'', then per key: interval_us, capacity, cost (units)
#: All or none: -> {1} consumed from every bucket | {0, i, retry_after_us} nothing consumed
RL_ACQUIRE = (
    _NOW_US
    + """
local now = now_us(ARGV[1])
local new = {}
local worst, worst_i = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local cap = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local stored = tonumber(redis.call('GET', KEYS[i]) or '0')
  local tat = stored
  if tat < now then tat = now end
  local nt = tat + cost * interval
  local allow_at = nt - cap * interval
  local wait = math.min(allow_at, stored) - now
  if wait > 1 and wait > worst then worst = wait; worst_i = i end
  new[i] = nt
end
if worst_i > 0 then return {0, worst_i, string.format('%.0f', worst)} end
for i = 1, #KEYS do
  if new[i] > now then
    redis.call('SET', KEYS[i], string.format('%.0f', new[i]), 'PX', math.ceil((new[i] - now) / 1000) + 1)
  end
end
return {1}
"""
)

#: KEYS: buckets.  ARGV: now_us|'', then per key: interval_us, delta (units; < 0 gives back)
RL_ADJUST = (
    _NOW_US
    + """
local now = now_us(ARGV[1])
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local delta = tonumber(ARGV[2 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local nt = tat + delta * interval
  if nt <= now then
    redis.call('DEL', KEYS[i])
  else
    redis.call('SET', KEYS[i], string.format('%.0f', nt), 'PX', math.ceil((nt - now) / 1000) + 1)
  end
end
return 1
"""
)

# -- anomaly ------------------------------------------------------------------------------------------

#: KEYS: the subject's state hash.  ARGV: now_ms|'', amount_usd, bucket_ms, alpha, idle_ttl_ms
#: Same algorithm as ``anomaly.RateState.add`` -> {cur, prev, ewma, n, frac} (as strings)
ANOMALY_ADD = (
    _NOW_MS
    + """
local now = now_ms(ARGV[1])
local amount = tonumber(ARGV[2])
local bms = tonumber(ARGV[3])
local alpha = tonumber(ARGV[4])
local b = math.floor(now / bms)
local v = redis.call('HMGET', KEYS[1], 'b', 'cur', 'prev', 'ewma', 'n', 'first')
local cb = tonumber(v[1])
local cur, prev, ewma, n, first = 0, 0, 0, 0, b
if cb == nil then
  cb = b
else
  cur = tonumber(v[2]); prev = tonumber(v[3]); ewma = tonumber(v[4]); n = tonumber(v[5]); first = tonumber(v[6])
end
local function fold(x)
  if n == 0 then ewma = x else ewma = ewma + alpha * (x - ewma) end
  n = n + 1
end
if b > cb then
  if cb - 1 >= first then fold(prev) end
  if cb <= b - 2 then fold(cur) end
  local z = b - cb - 2
  if z > 0 then
    if n == 0 then ewma = 0; n = 1; z = z - 1 end
    ewma = ewma * math.pow(1 - alpha, z)
    n = n + z
  end
  if b - 1 == cb then prev = cur else prev = 0 end
  cur = 0
  cb = b
end
cur = cur + amount
local f = '%.17g'
redis.call('HSET', KEYS[1], 'b', cb, 'cur', string.format(f, cur), 'prev', string.format(f, prev),
           'ewma', string.format(f, ewma), 'n', n, 'first', first)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local frac = (now - cb * bms) / bms
if frac < 0 then frac = 0 end
return {string.format(f, cur), string.format(f, prev), string.format(f, ewma), tostring(n), string.format(f, frac)}
"""
)

SOURCES: dict[str, str] = {
    "reserve": RESERVE,
    "settle": SETTLE,
    "release": RELEASE,
    "status": STATUS,
    "reset": RESET,
    "spend": SPEND,
    "fold": FOLD,
    "rl_acquire": RL_ACQUIRE,
    "rl_adjust": RL_ADJUST,
    "anomaly_add": ANOMALY_ADD,
}


Call = tuple[str, Sequence[Any], Sequence[Any]]


class Scripts:
    """The governance scripts registered on one ``redis.asyncio`` client (one pool, shared by every
    Redis backend of a ``Governance``). ``run_many`` sends several scripts in one round trip."""

    def __init__(self, client: Any) -> None:
        from redis.exceptions import RedisError

        from .batch import AutoPipeline

        self.client = client
        self._scripts = {name: client.register_script(src) for name, src in SOURCES.items()}
        self._errors = RedisError  # (imported once, not per call)
        #: concurrent requests' round trips sent as one pipeline per event-loop tick (``batch.py``)
        self.pipeline = AutoPipeline(self)

    def sha(self, name: str) -> str:
        return str(self._scripts[name].sha)

    async def run(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        RedisError = self._errors  # noqa: N806

        try:
            return await self._scripts[name](keys=list(keys), args=list(args))
        except RedisError as exc:
            raise GovernanceStoreError(f"governance store: {name} failed: {exc}") from exc

    async def run_many(self, calls: Sequence[Call], *, reads: Sequence[str] = ()) -> list[Any]:
        """Run scripts pipelined (not a transaction: each script is atomic on its own), together with
        what other requests submit in the same event-loop tick: one round trip for all of them
        (:class:`~.batch.AutoPipeline`). A script the server does not know yet is loaded and run again,
        alone. ``reads``: keys to GET first (their values lead the returned list)."""
        return await self.pipeline.submit(calls, reads)


def s(v: Any) -> str:
    """A Redis reply as text."""
    return v.decode() if isinstance(v, bytes) else str(v)


__all__ = ["SOURCES", "Scripts", "GovernanceStoreError", "Call"]
