"""Audit queries: one filter record every sink understands, and the pure predicate behind it."""

from __future__ import annotations

from dataclasses import dataclass

from .record import OUTCOMES, AuditError, AuditEvent


@dataclass(slots=True, frozen=True)
class AuditQuery:
    """Filters for :meth:`AuditSink.query`; results are newest first (the sink's write order).

    ``since`` (inclusive) and ``until`` (exclusive) are epoch seconds on the event's ``time``.
    ``outcome`` is one outcome or a tuple of them. ``limit`` is the most rows returned (None: all).
    """

    key_id: str | None = None
    team: str | None = None
    user: str | None = None
    route: str | None = None
    outcome: str | tuple[str, ...] | None = None
    request_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = 100

    def __post_init__(self) -> None:
        bad = [o for o in self.outcomes if o not in OUTCOMES]
        if bad:
            raise AuditError(f"AuditQuery.outcome: unknown outcome {bad[0]!r} (one of {', '.join(OUTCOMES)})")
        if self.limit is not None and self.limit < 0:
            raise AuditError(f"AuditQuery.limit: must be >= 0 or None, got {self.limit}")

    @property
    def outcomes(self) -> tuple[str, ...]:
        if self.outcome is None:
            return ()
        return (self.outcome,) if isinstance(self.outcome, str) else tuple(self.outcome)

    def matches(self, ev: AuditEvent) -> bool:
        return (
            (self.key_id is None or ev.key_id == self.key_id)
            and (self.team is None or ev.team == self.team)
            and (self.user is None or ev.user == self.user)
            and (self.route is None or ev.route == self.route)
            and (self.outcome is None or ev.outcome in self.outcomes)
            and (self.request_id is None or ev.request_id == self.request_id)
            and (self.since is None or ev.time >= self.since)
            and (self.until is None or ev.time < self.until)
        )


__all__ = ["AuditQuery"]
