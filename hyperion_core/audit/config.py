"""Audit settings (pydantic, frozen, unknown keys refused), for a ``audit:`` section of the gateway
config. Units are in the names: ``_s`` is seconds.

YAML shape::

    audit:
      sink: sqlite:///var/lib/hyperion/audit.db     # or jsonl:///..., redis://host:6379/0?stream=...
      spool_path: /var/lib/hyperion/audit-spool-{pid}.jsonl   # where events wait while the sink is down
      spool_max_events: 10000
      store_content: false                          # keep prompts and answers (scrubbed) in events
      anchor_path: /var/lib/hyperion-anchor/audit.anchor   # signed head checkpoints, outside the store
      checkpoint_key: ${HYPERION_AUDIT_KEY}         # HMAC key for them; never stored, logged or audited
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ..errors import ConfigError
from .commands import open_sink, parse_sink_spec
from .log import AuditLog


class AuditConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: a sink spec (see :func:`hyperion_core.audit.open_sink`); the embedded default is a SQLite file
    sink: str = "sqlite://hyperion-audit.db"
    #: a JSONL file (``{pid}`` becomes the process id; spools left by dead processes are adopted and delivered by the next one); None keeps the spool in memory (lost on a crash)
    spool_path: str | None = None
    #: events the spool holds at most; beyond that new events are dropped, loudly. 0 = no spool
    spool_max_events: int = Field(default=10_000, ge=0)
    #: store prompts and answers (scrubbed of secrets) in events; off by default
    store_content: bool = False
    #: events per sink write, at most (>= 1)
    batch_size: int = Field(default=500, ge=1)
    #: events waiting in memory for the writer, at most; beyond that new events are dropped, loudly
    max_pending: int = Field(default=100_000, ge=1)
    #: first retry delay after a failed write, doubling up to ``retry_max_s`` (seconds, > 0)
    retry_base_s: float = Field(default=0.1, gt=0)
    #: the longest wait between retries of a failed write, seconds (> 0)
    retry_max_s: float = Field(default=5.0, gt=0)
    #: seconds one sink write may take before it counts as failed; None = no limit
    write_timeout_s: float | None = Field(default=30.0, gt=0)
    #: a file outside the store where the writer keeps a checkpoint of the chain's head, so ``hyperion audit verify`` catches a log cut at the end, wiped or rewritten; None = no anchor
    anchor_path: str | None = None
    #: HMAC-SHA256 key that signs the checkpoints (write ``${HYPERION_AUDIT_KEY}``); never stored, logged or audited. None = unsigned
    checkpoint_key: SecretStr | None = None
    #: events written between two checkpoints, at most (>= 1)
    checkpoint_every: int = Field(default=1000, ge=1)
    #: seconds between two checkpoints, at most, checked at each write (> 0); a checkpoint is also written at close
    checkpoint_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("sink")
    @classmethod
    def _sink_spec(cls, v: str) -> str:
        try:
            parse_sink_spec(v)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return v

    @model_validator(mode="after")
    def _retry_order(self) -> AuditConfig:
        if self.retry_base_s > self.retry_max_s:
            raise ValueError(f"retry_base_s ({self.retry_base_s}) must not exceed retry_max_s ({self.retry_max_s})")
        return self

    def build(self) -> AuditLog:
        """The :class:`AuditLog` these settings describe (opens nothing until the first write)."""
        return AuditLog(
            open_sink(self.sink),
            spool_path=self.spool_path,
            spool_max_events=self.spool_max_events,
            store_content=self.store_content,
            batch_size=self.batch_size,
            max_pending=self.max_pending,
            retry_base=self.retry_base_s,
            retry_max=self.retry_max_s,
            write_timeout=self.write_timeout_s,
            anchor_path=self.anchor_path,
            checkpoint_key=self.checkpoint_key,
            checkpoint_every=self.checkpoint_every,
            checkpoint_interval=self.checkpoint_interval_s,
        )


__all__ = ["AuditConfig"]
