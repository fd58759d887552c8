"""Pipeline steps 1, 3, 8 and 10 around every request: authorize, admit, settle, audit.

The :class:`Gateway` calls :meth:`Steward.admit` before the cache and the upstream call, then exactly
one of :meth:`Steward.succeed` / :meth:`Steward.fail` — so every accepted request is answered or
failed with one audit event, and its budget reservation is settled or released exactly once.
A gateway with no keys, governance or audit configured skips all of it (``active`` is False).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AccessError, BudgetExceededError, InvalidKeyError, StreamInterruptedError
from .governance.keys import KEY_PREFIX, KeyRecord, check_active, parse_key, verify_secret
from .providers.params import ANTHROPIC_THINKING_BUDGET, GEMINI_THINKING_BUDGET
from .redis_client import state_client
from .tokens import encoding_for, estimate_prompt_tokens, prompt_tokens_bound
from .types import Caller, ChatRequest, ChatResponse, Usage, new_request_id

if TYPE_CHECKING:
    from .config import GatewayConfig
    from .pricing import Price
    from .routing import RouteState


class StreamCancelled(Exception):
    """Audit marker: the caller stopped reading a stream after ``delivered_chunks`` chunks. ``usage`` and
    ``cost`` are what was generated upstream until then (the provider's usage when it arrived, else
    estimated): a closed stream is billed like any other."""

    audit_outcome = "cancelled"

    def __init__(
        self, delivered_chunks: int, *, usage: Usage | None = None, cost: float = 0.0, deployment: str | None = None
    ) -> None:
        super().__init__(f"the caller closed the stream after {delivered_chunks} chunk(s)")
        self.delivered_chunks = delivered_chunks
        self.usage = usage
        self.cost = cost
        self.deployment = deployment


@dataclass(slots=True)
class Ticket:
    """One request's passage through the steward."""

    req: ChatRequest
    stream: bool
    started: float  # wall clock, seconds
    perf: float
    admission: Any = None
    settled: bool = False


#: request parameters (OpenAI names, in ``ChatRequest.extra``) that also bound the answer's size
_OUTPUT_CAPS = ("max_completion_tokens", "max_output_tokens")


def output_cap(req: ChatRequest) -> int | None:
    """The most output tokens the request lets one answer have: ``max_tokens`` or an alias in
    ``extra`` (the largest when several are set), or None when it sets none."""
    cap = req.max_tokens
    if req.extra:
        for name in _OUTPUT_CAPS:
            v = req.extra.get(name)
            if type(v) is int and v > 0 and (cap is None or v > cap):
                cap = v
    return cap


def thinking_budget(req: ChatRequest) -> int:
    """Output tokens a request may spend thinking on top of its answer: an explicit budget (Anthropic
    ``thinking.budget_tokens``, Gemini ``thinkingConfig.thinkingBudget``) or the largest budget a
    wire gives its ``reasoning_effort`` (0 when it asks for none)."""
    extra = req.extra
    if not extra:
        return 0
    out = 0
    effort = extra.get("reasoning_effort")
    if isinstance(effort, str):
        out = max(ANTHROPIC_THINKING_BUDGET.get(effort, 0), GEMINI_THINKING_BUDGET.get(effort, 0))
    thinking = extra.get("thinking")
    if isinstance(thinking, dict) and type(thinking.get("budget_tokens")) is int:
        out = max(out, thinking["budget_tokens"])
    tc = extra.get("thinkingConfig")
    if isinstance(tc, dict) and type(tc.get("thinkingBudget")) is int:
        out = max(out, tc["thinkingBudget"])
    return out


def answers(req: ChatRequest) -> int:
    """How many answers one call asks for (``n`` / Gemini ``candidateCount``)."""
    n = req.n if type(req.n) is int and req.n > 1 else 1
    cc = req.extra.get("candidateCount") if req.extra else None
    return max(n, cc) if type(cc) is int else n


def _uncapped_hint(exc: BudgetExceededError, route: str, max_out: int) -> None:
    exc.message += (
        f"; with no max_tokens set, this request reserved the model's whole output window ({max_out:,} "
        f"tokens): pass max_tokens, or set default_max_tokens on route '{route}'"
    )
    exc.args = (exc.message,)


def _warm_tokenizers(models: set[str]) -> None:
    for m in models:
        encoding_for(m)


class Steward:
    def __init__(self, cfg: GatewayConfig, *, secrets: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        self.secrets = tuple(s for s in secrets if s)
        self.keys_required = cfg.keys.required
        self._keys: Any = None
        self.governance: Any = None
        self.audit: Any = None
        self._redis: Any = None  # one client for keys and governance when both live in Redis
        self._records: dict[str, Any] = {}  # key id -> KeyRecord: immutable but for revocation/expiry
        self._one_trip = False
        if cfg.governance is not None:
            from .governance import Governance

            gcfg = cfg.governance
            st = cfg.state
            if st.backend == "redis" and gcfg.backend == "memory" and gcfg.redis_url is None:
                gcfg = gcfg.model_copy(update={"backend": "redis", "redis_url": st.redis_url, "key_prefix": st.prefix})
            shared = gcfg.backend == "redis" and gcfg.redis_url in (None, st.redis_url) and st.redis_url
            self.governance = Governance(gcfg, redis=self._client() if shared else None)
            # budgets count prompts with the models' own tokenizers: load them now, off the request path
            models = {d.upstream_model for rc in cfg.routes.values() for d in rc.deployments}
            threading.Thread(target=_warm_tokenizers, args=(models,), name="hyperion-tokenizers", daemon=True).start()
            self._one_trip = bool(shared) and self._keys_kind() == "redis"
        if cfg.audit is not None:
            from .audit import event_from_error, event_from_response

            self.audit = cfg.audit.build()
            self._event_ok = event_from_response
            self._event_error = event_from_error
        self.active = bool(self.keys_required or cfg.keys.store != "auto" or self.governance or self.audit)

    # -- keys --------------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._redis is None:
            st = self.cfg.state
            self._redis = state_client(st.redis_url, max_connections=st.max_connections, pool_timeout=st.pool_timeout)
        return self._redis

    def _keys_kind(self) -> str:
        kind = self.cfg.keys.store
        if kind == "auto":
            kind = "redis" if self.cfg.state.backend == "redis" else "sqlite"
        return kind

    @property
    def keys(self) -> Any:
        """The virtual-key store (built on first use): Redis when state is shared, else SQLite."""
        if self._keys is None:
            from .governance.keys import RedisKeyStore, SqliteKeyStore

            kind = self._keys_kind()
            if kind == "redis":
                if not self.cfg.state.redis_url:
                    raise InvalidKeyError("keys.store 'redis' needs state.redis_url")
                self._keys = RedisKeyStore(self._client(), prefix=self.cfg.state.prefix)
            elif kind == "memory":
                from .governance.keys import MemoryKeyStore

                self._keys = MemoryKeyStore()
            else:
                self._keys = SqliteKeyStore(Path(self.cfg.state.path) / "keys.db")
        return self._keys

    # -- the request path --------------------------------------------------------------------------
    def ticket(self, req: ChatRequest, stream: bool) -> Ticket | None:
        vk = req.caller.virtual_key if req.caller else None
        if not self.active and vk is None:
            return None
        return Ticket(req, stream, time.time(), time.perf_counter())

    async def admit(self, t: Ticket | None, rs: RouteState) -> None:
        """Authorize the caller and reserve its budget and rate allowance for a call on route ``rs``
        (priced at its most expensive deployment). Raises (audited by :meth:`fail`) when the request
        may not run."""
        if t is not None:
            await self.admit_priced(t, [(d.adapter.target.price, d.adapter.target.model) for d in rs.deployments])

    async def admit_priced(self, t: Ticket, priced: list[tuple[Price, str | None]]) -> None:
        """:meth:`admit` for a call whose possible (price, upstream model) pairs are given (e.g. a model
        outside the gateway). The reservation is the worst case over them: each model's prompt counted
        with a bound that is never below its provider's count (``tokens.prompt_tokens_bound``)."""
        req = t.req
        caller = req.caller
        vk = caller.virtual_key if caller is not None else None
        cached = None
        if vk:
            key_id, secret = parse_key(vk)
            cached = self._records.get(key_id) if self._one_trip else None
            if cached is not None and not verify_secret(cached, secret):
                cached = None
            rec = cached or await self.keys.authenticate_record(vk)  # a cold key: one extra round trip
            if self._one_trip and cached is None:
                if len(self._records) > 100_000:
                    self._records.clear()
                self._records[rec.key_id] = rec
            principal = rec.principal()
            principal.require_route(req.route)
            meta = {**principal.metadata, **caller.metadata} if principal.metadata else caller.metadata
            req.caller = caller = Caller(vk, principal.key_id, principal.team, principal.user, caller.tags, meta)
        elif self.keys_required:
            raise InvalidKeyError("this gateway requires a virtual key (pass virtual_key='hk-...')", route=req.route)
        if self.governance is None:
            return
        c = req.caller or Caller()
        bounds = {model: prompt_tokens_bound(req, model) for _, model in priced}
        prompt = max(bounds.values())
        cap = output_cap(req)
        window = max((p.max_output_tokens or 4096) for p, _ in priced)
        max_out = ((cap or window) + thinking_budget(req)) * answers(req)
        worst = max(p.estimate(bounds[model], max_out) for p, model in priced)
        # a warm key's record is re-read in the admission round trip: revocation and expiry still
        # take effect at once, and Redis admission stays one round trip
        reads = (self.keys.record_key(cached.key_id),) if cached is not None else ()
        try:
            t.admission = await self.governance.admit(
                # one reservation per admitted call, whatever id the caller chose: a shared request_id
                # must never let many calls share (and settle) one hold
                f"{req.request_id}/{new_request_id()}",
                {"key": c.key_id, "team": c.team, "user": c.user, "route": req.route},
                tokens_estimate=prompt + max_out,
                cost_estimate_usd=worst,
                reads=reads,
            )
        except BudgetExceededError as exc:
            if cap is None:
                _uncapped_hint(exc, req.route, max_out)
            raise
        if reads:
            raw = t.admission.reads[0]
            try:
                if raw is None:
                    raise InvalidKeyError(f"unknown virtual key '{KEY_PREFIX}{cached.key_id}.…'")
                check_active(KeyRecord.loads(raw), self.keys.now())
            except AccessError:
                self._records.pop(cached.key_id, None)
                await self.governance.release(t.admission)
                t.admission = None
                raise

    async def succeed(self, t: Ticket | None, resp: ChatResponse, *, delivered_chunks: int | None = None) -> None:
        if t is None:
            return
        if self.governance is not None and t.admission is not None and not t.settled:
            t.settled = True
            if resp.cache is not None:
                await self.governance.settle(
                    t.admission, 0.0, saved_usd=resp.cache.cost_saved, deployment=resp.cache.source_deployment,
                    model=resp.model,
                )
            else:
                u = resp.usage
                await self.governance.settle(
                    t.admission, resp.cost, prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                    deployment=resp.deployment, model=resp.model,
                )
        if self.audit is not None:
            self.audit.emit(
                self._event_ok(
                    resp, t.req.caller, stream=t.stream, store_content=self.audit.store_content,
                    messages=t.req.messages, delivered_chunks=delivered_chunks, secrets=self.secrets, time=t.started,
                )
            )

    async def fail(self, t: Ticket | None, exc: BaseException) -> None:
        if t is None:
            return
        cost = 0.0
        usage: Usage | None = None
        if isinstance(exc, (StreamInterruptedError, StreamCancelled)):  # billed for what was generated
            cost, usage = exc.cost, exc.usage
        if self.governance is not None and t.admission is not None and not t.settled:
            t.settled = True
            try:
                if cost > 0 and usage is not None:  # a cut stream was billed for what it generated
                    await self.governance.settle(
                        t.admission, cost, prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens, deployment=getattr(exc, "deployment", None),
                    )
                else:
                    await self.governance.release(t.admission)
            except asyncio.CancelledError:
                raise
            except Exception:  # the reservation expires by itself; the original error matters more
                pass
        if self.audit is not None:
            self.audit.emit(
                self._event_error(
                    exc, t.req.request_id, t.req.route, await self._attributed(t.req.caller), stream=t.stream,
                    deployment=getattr(exc, "deployment", None), attempts=getattr(exc, "attempts", None),
                    usage=usage, cost=cost, latency_ms=(time.perf_counter() - t.perf) * 1000.0,
                    delivered_chunks=getattr(exc, "delivered_chunks", None), store_content=self.audit.store_content,
                    messages=t.req.messages, secrets=self.secrets, time=t.started,
                )
            )

    async def _attributed(self, caller: Caller | None) -> Caller | None:
        """A caller refused before its key was authenticated (unknown, revoked or expired key; a bad
        route) is audited under the key id it presented, when that parses — and under the key's team
        and user when the presented secret is the key's own (never the secret itself)."""
        if caller is None or caller.key_id is not None or not caller.virtual_key:
            return caller
        try:
            key_id, secret = parse_key(caller.virtual_key)
        except AccessError:
            return caller
        team, user = caller.team, caller.user
        try:
            rec = await self.keys.get(key_id)
            if rec is not None and verify_secret(rec, secret):
                team, user = rec.team or team, rec.user or user
        except Exception:  # noqa: BLE001 - attribution is best effort; the denial is audited regardless
            pass
        return replace(caller, key_id=key_id, team=team, user=user)

    async def aclose(self) -> None:
        if self.audit is not None:
            await self.audit.aclose()
        if self.governance is not None:
            await self.governance.aclose()
        if self._keys is not None:
            await self._keys.aclose()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


__all__ = ["Steward", "Ticket", "StreamCancelled", "estimate_prompt_tokens", "output_cap"]
