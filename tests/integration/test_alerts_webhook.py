"""The webhook alert sink against real HTTP endpoints on loopback: retries, an endpoint that is down,
and one that accepts connections but never answers (the request path never waits for any of them)."""

from __future__ import annotations

import socket

from aiohttp import web

from hyperion_core.governance import BudgetAlert, WebhookSink

T0 = 1_795_478_400.0  # 2026-11-24 00:00 UTC (an alert's time stamp; nothing here depends on today's date)

BUDGET_ALERT = BudgetAlert(
    "team 'ml' daily budget", "team", "ml", "daily", "d2026-11-24", "threshold", 0.8, 8.0, 10.0, T0
)


async def test_webhook_retries_then_succeeds():
    seen: list[dict] = []
    answers = [500, 503, 200]

    async def hook(request: web.Request) -> web.Response:
        seen.append(await request.json())
        return web.Response(status=answers[len(seen) - 1])

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", retries=3, backoff_s=0.01, headers={"x-token": "t"})
    try:
        sink.emit(BUDGET_ALERT)
        await sink.flush(timeout=10)
        assert len(seen) == 3 and sink.stats == {"sent": 1, "failed": 0, "dropped": 0}
        assert seen[-1]["type"] == "budget" and seen[-1]["threshold"] == 0.8
        assert seen[-1]["message"] == BUDGET_ALERT.message
    finally:
        await sink.aclose()
        await runner.cleanup()


async def test_webhook_that_is_down_never_touches_the_request_path():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", retries=2, backoff_s=0.01, queue_size=2)
    try:
        for _ in range(5):
            assert sink.emit(BUDGET_ALERT) is None  # returns at once, raises nothing
        await sink.flush(timeout=10)
        # every alert is accounted for exactly once: failed after its retries, or dropped from the queue
        assert sink.stats["sent"] == 0 and sink.stats["failed"] + sink.stats["dropped"] == 5
    finally:
        await sink.aclose()


async def test_a_hung_webhook_fills_its_bounded_queue_and_drops_the_oldest():
    """A webhook that accepts connections and never answers holds the sender on its first alert:
    the queue (2) keeps the newest and drops the oldest — whatever the machine's speed."""
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel accepts connections; nobody ever reads or answers
    port = hung.getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", retries=0, timeout_s=0.5, queue_size=2)
    try:
        for _ in range(5):
            sink.emit(BUDGET_ALERT)  # the request path never waits for the hung endpoint
        await sink.flush(timeout=30)
        assert sink.stats["sent"] == 0 and sink.stats["dropped"] >= 2
        assert sink.stats["failed"] + sink.stats["dropped"] == 5
    finally:
        await sink.aclose()
        hung.close()
