"""Run the server with uvicorn (uvloop + httptools when installed): ``hyperion serve``.

Every worker builds its own app from the same config file (:func:`app_from_env`, a uvicorn app
factory): the config path and the server settings travel in the environment, so ``--workers N`` (N
processes sharing one socket) and a single in-process server are the same code. State shared across
workers — keys, budgets, rate limits, cache — lives in Redis (``state.backend: redis``); with the
embedded ``memory`` state each worker has its own, which the runner warns about.

Shutdown (SIGINT / SIGTERM): uvicorn stops accepting, lets requests and streams in flight finish (up
to ``graceful_timeout`` seconds), then each app flushes its audit log and closes its pools.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib.util
import logging
import os
import shutil
import tempfile
from typing import Any

import orjson

from ..config import GatewayConfig
from .app import ServerSettings, create_app
from .oidc import OIDCSettings

log = logging.getLogger("hyperion.server")

CONFIG_ENV = "HYPERION_SERVER_CONFIG"
SETTINGS_ENV = "HYPERION_SERVER_SETTINGS"


def app_from_env() -> Any:
    """The app of one worker: config path and settings from the environment (set by :func:`serve`)."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start the server with 'hyperion serve --config FILE'")
    raw = os.environ.get(SETTINGS_ENV)
    settings = settings_from_json(raw) if raw else ServerSettings()
    return create_app(path, settings)


def settings_from_json(raw: str | bytes) -> ServerSettings:
    data = orjson.loads(raw)
    oidc = data.pop("oidc", None)
    if oidc is not None:
        oidc = OIDCSettings(**{**oidc, "algorithms": tuple(oidc.get("algorithms") or ("RS256", "ES256"))})
    return ServerSettings(**data, oidc=oidc)


def serve(
    config: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    settings: ServerSettings | None = None,
    graceful_timeout: float = 30.0,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve ``config`` on ``host:port`` until interrupted (blocks)."""
    import uvicorn

    settings = settings or ServerSettings()
    cfg = GatewayConfig.from_file(config)  # fail here, with the config's own message, not in each worker
    if workers > 1 and cfg.state.backend != "redis":
        log.warning("%d workers with state.backend 'memory': each worker has its own keys, budgets, rate limits "
                    "and cache; use state.backend 'redis' to share them", workers)
    os.environ[CONFIG_ENV] = os.path.abspath(config)
    os.environ[SETTINGS_ENV] = orjson.dumps(dataclasses.asdict(settings)).decode()
    if workers > 1 and settings.metrics and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # every worker writes its samples here; a scrape on any worker adds them up
        folder = tempfile.mkdtemp(prefix="hyperion-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        atexit.register(shutil.rmtree, folder, True)  # this process supervises the workers: it exits last
    uvicorn.run(
        "hyperion_core.server.run:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        timeout_graceful_shutdown=graceful_timeout,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
    )


__all__ = ["CONFIG_ENV", "SETTINGS_ENV", "app_from_env", "serve"]
