"""Cache invalidation by namespace: a generation number per namespace, folded into the tenant scope of
every key, so bumping it makes that namespace's entries unreachable at once (they then expire by TTL).

The namespace is a request's ``CacheControl.namespace`` (``""`` for requests that set none). In one
process the bump holds at once; with Redis (``{prefix}:cachegen``, a hash ``namespace -> generation``,
``HINCRBY``) every other process reads it within :data:`REFRESH_S`. Namespaces never invalidated cost
one empty-dict check per key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("hyperion.cache")

#: seconds a process trusts its copy of the shared generations
REFRESH_S = 2.0


class Generations:
    def __init__(self, redis: Any = None) -> None:
        self.redis = redis  # a cache RedisBackend (its client and prefix), or None: this process only
        self.current: dict[str, int] = {}
        self._read = 0.0
        self._task: asyncio.Task[None] | None = None

    def scoped(self, scope: str, control: Any) -> str:
        """``scope`` with the generation of the request's namespace, when it was ever invalidated."""
        if self.redis is not None and time.monotonic() - self._read > REFRESH_S:
            self._read = time.monotonic()
            if self._task is None or self._task.done():
                try:
                    self._task = asyncio.get_running_loop().create_task(self.refresh())
                except RuntimeError:  # no loop (a sync caller): the next async call refreshes
                    pass
        if not self.current:
            return scope
        gen = self.current.get((control.namespace if control is not None else None) or "")
        return f"{scope}|gen:{gen}" if gen else scope

    def _key(self) -> str:
        return f"{self.redis.prefix}:cachegen"

    async def invalidate(self, namespace: str) -> int:
        """Make every entry of ``namespace`` (``""``: requests without one) unreachable; returns the
        new generation."""
        if self.redis is not None:
            gen = int(await self.redis.client().hincrby(self._key(), namespace, 1))
        else:
            gen = self.current.get(namespace, 0) + 1
        self.current = {**self.current, namespace: gen}
        return gen

    async def refresh(self) -> None:
        """Read the shared generations now."""
        self._read = time.monotonic()
        try:
            raw = await self.redis.client().hgetall(self._key())
        except Exception as exc:  # noqa: BLE001 - the last known generations stay in force
            log.warning("cache generations not refreshed: %s: %s", type(exc).__name__, exc)
            return
        self.current = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}


__all__ = ["Generations", "REFRESH_S"]
