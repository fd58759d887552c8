"""``hyperion serve``: the OpenAI- and Anthropic-compatible HTTP door over the one pipeline.

* :func:`create_app` — the ASGI app (Starlette, with the model endpoints dispatched directly) over a :class:`~hyperion_core.Gateway` or a config;
* :class:`ServerSettings` — keys required, body limits, admin API and metrics on or off;
* :func:`serve` — run it with uvicorn, one or several workers.

Needs the ``server`` extra (``pip install 'hyperion-gateway[server]'``).
"""

from .app import ServerSettings, create_app
from .run import serve

__all__ = ["ServerSettings", "create_app", "serve"]
