"""The stateful services behind a gateway's stages: virtual keys, governance, audit, one Redis client.

Built once from a :class:`~hyperion_core.config.GatewayConfig`; the stages (``stages.py``) hold a
reference. Nothing here is on the request path but what the stages call.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InvalidKeyError
from .redis_client import state_client
from .tokens import encoding_for

if TYPE_CHECKING:
    from .config import GatewayConfig


def _warm_tokenizers(models: set[str]) -> None:
    for m in models:
        encoding_for(m)


class Services:
    """Keys, governance and audit of one gateway (each None / lazy when not configured)."""

    def __init__(self, cfg: GatewayConfig, *, secrets: tuple[str, ...] = ()) -> None:
        self.cfg = cfg
        #: provider credentials: scrubbed from every audit event and error message
        self.secrets = tuple(s for s in secrets if s)
        self.keys_required = cfg.keys.required
        self._keys: Any = None
        self.governance: Any = None
        self.audit: Any = None
        self.pending: Any = None  # governance.pending.PendingSettlements, with governance
        self._redis: Any = None  # one client for keys and governance when both live in Redis
        #: key id -> KeyRecord of warm keys (immutable but for revocation and expiry, which admission re-reads)
        self.records: dict[str, Any] = {}
        #: a warm key's record is re-read inside the admission round trip (keys and governance share Redis)
        self.one_trip = False
        if cfg.governance is not None:
            from .governance import Governance

            gcfg = cfg.governance
            st = cfg.state
            if st.backend == "redis" and gcfg.backend == "memory" and gcfg.redis_url is None:
                gcfg = gcfg.model_copy(update={"backend": "redis", "redis_url": st.redis_url, "key_prefix": st.prefix})
            shared = gcfg.backend == "redis" and gcfg.redis_url in (None, st.redis_url) and st.redis_url
            self.governance = Governance(gcfg, redis=self.client() if shared else None)
            # budgets count prompts with the models' own tokenizers: load them now, off the request path
            models = {d.upstream_model for rc in cfg.routes.values() for d in rc.deployments}
            threading.Thread(target=_warm_tokenizers, args=(models,), name="hyperion-tokenizers", daemon=True).start()
            self.one_trip = bool(shared) and self._keys_kind() == "redis"
            from .governance.pending import PendingSettlements

            # settlements the store could not take (Redis away mid-request), written once it is back;
            # on a file when the ledger is shared (a memory ledger dies with its process anyway)
            folder = Path(cfg.state.path) if gcfg.backend == "redis" else None
            self.pending = PendingSettlements(
                self.governance, folder, ledger_id=f"{gcfg.redis_url or cfg.state.redis_url}|{gcfg.key_prefix}"
            )
        if cfg.audit is not None:
            self.audit = cfg.audit.build()
        #: whether any stage beyond routing has work to do for requests that carry no virtual key
        self.active = bool(self.keys_required or cfg.keys.store != "auto" or self.governance or self.audit)

    def client(self) -> Any:
        """The Redis client shared by keys and governance (built on first use)."""
        if self._redis is None:
            st = self.cfg.state
            self._redis = state_client(st.redis_url, max_connections=st.max_connections, pool_timeout=st.pool_timeout,
                                       socket_timeout=st.socket_timeout)
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
            from .governance.keys import MemoryKeyStore, RedisKeyStore, SqliteKeyStore

            kind = self._keys_kind()
            if kind == "redis":
                if not self.cfg.state.redis_url:
                    raise InvalidKeyError("keys.store 'redis' needs state.redis_url")
                self._keys = RedisKeyStore(self.client(), prefix=self.cfg.state.prefix)
            elif kind == "memory":
                self._keys = MemoryKeyStore()
            else:
                self._keys = SqliteKeyStore(Path(self.cfg.state.path) / "keys.db")
        return self._keys

    async def aclose(self) -> None:
        if self.pending is not None:
            try:
                await self.pending.replay()
            except Exception:  # noqa: BLE001 - still unreachable: the queue file keeps them
                pass
            self.pending.close()
        if self.audit is not None:
            await self.audit.aclose()
        if self.governance is not None:
            await self.governance.aclose()
        if self._keys is not None:
            await self._keys.aclose()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


__all__ = ["Services"]
