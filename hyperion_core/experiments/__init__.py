"""Experiments: route-level shadow traffic and A/B splits, their records, reports and promotion.

* ``shadow: {target, sample, max_pending}`` on a route mirrors a sample of its requests to another
  route after the primary answered (background task; never delays, fails or bills the primary; the
  shadow's spend goes to budget subject key ``shadow:<name>``; dropped, and counted, beyond
  ``max_pending`` in flight).
* ``split: {target, share, sticky, enabled}`` sends a sticky share (stable hash of the experiment and
  the caller's key / user) to variant B: a deployment of the route or another route.
* Each request of an experiment leaves a :class:`~.store.Record` per variant (latency, TTFT, error
  class, tokens, cost, deployment; shadow pairs also answer agreement) in a store: memory, or a Redis
  list per experiment when state is in Redis (shared by processes).
* :meth:`Experiments.report` (``gateway.experiments``) computes the side-by-side table with bootstrap
  confidence intervals and a verdict; ``hyperion experiments report NAME`` prints it (``--html`` with
  plots), ``hyperion experiments promote NAME`` prints the config change that makes the winner primary.

Submodules import lazily: ``config`` is read by the gateway's config model.
"""
