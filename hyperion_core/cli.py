"""The ``hyperion`` command line."""

from __future__ import annotations

import argparse
import sys

from .errors import HyperionError


def _demo(args: argparse.Namespace) -> int:
    from .demo import run

    return run(args.config)


def _mock(args: argparse.Namespace) -> int:
    from .mock_provider import serve

    serve(args.host, args.port)
    return 0


def _check(args: argparse.Namespace) -> int:
    from .config import GatewayConfig

    cfg = GatewayConfig.from_file(args.config)
    for name, route in cfg.routes.items():
        deps = ", ".join(d.id for d in route.deployments)
        print(f"route {name}: {route.strategy} over {deps}")
    print("config OK")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperion", description="Hyperion LLM gateway")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the scripted failover demo against local mock providers")
    d.add_argument("--config", default=None, help="gateway YAML (default: examples/hyperion.yaml)")
    d.set_defaults(func=_demo)
    m = sub.add_parser("mock-provider", help="serve the OpenAI/Anthropic/Gemini mock provider")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=8900)
    m.set_defaults(func=_mock)
    c = sub.add_parser("check", help="validate a gateway config file")
    c.add_argument("config")
    c.set_defaults(func=_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HyperionError as exc:
        print(f"hyperion: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
