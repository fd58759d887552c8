"""The ``hyperion`` command line."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .errors import HyperionError, InvalidRequestError


def _demo(args: argparse.Namespace) -> int:
    if args.serve:
        from .server.demo import run as run_server_demo

        return run_server_demo(args.config)
    from .demo import run

    return run(args.config)


def _mock(args: argparse.Namespace) -> int:
    from .mock_provider import serve

    serve(args.host, args.port, strict=not args.lenient)
    return 0


def serve_settings(args: argparse.Namespace) -> Any:
    """The ``ServerSettings`` the ``serve`` flags describe (raises ``InvalidRequestError`` naming a bad flag)."""
    from .server import ServerSettings

    oidc = None
    if args.oidc_issuer:
        from .server.oidc import OIDCSettings

        if not args.oidc_audience:
            raise InvalidRequestError("--oidc-issuer needs --oidc-audience")
        role_map = dict(item.split("=", 1) for item in args.oidc_role or ())
        oidc = OIDCSettings(issuer=args.oidc_issuer, audience=args.oidc_audience, jwks_url=args.oidc_jwks_url,
                            roles_claim=args.oidc_roles_claim, team_claim=args.oidc_team_claim, role_map=role_map)
    elif args.oidc_model_calls:
        raise InvalidRequestError("--oidc-model-calls needs --oidc-issuer and --oidc-audience")
    return ServerSettings(require_keys=not args.allow_anonymous, max_body_bytes=args.max_body_bytes,
                          admin=not args.no_admin, metrics=not args.no_metrics, oidc=oidc, otel=args.otel,
                          oidc_model_calls=args.oidc_model_calls)


def _serve(args: argparse.Namespace) -> int:
    try:
        from .server import serve
    except ImportError as exc:  # starlette / uvicorn missing
        print(f"hyperion: the server needs the 'server' extra (pip install 'hyperion-gateway[server]'): {exc}",
              file=sys.stderr)
        return 2
    serve(args.config, host=args.host, port=args.port, workers=args.workers, settings=serve_settings(args),
          graceful_timeout=args.graceful_timeout, log_level=args.log_level, access_log=args.access_log)
    return 0


def _experiments(args: argparse.Namespace) -> int:
    """``report`` reads the records (shared through Redis when the config's state is there);
    ``promote`` prints (``--write``: applies) the config change that makes variant B primary."""
    from pathlib import Path

    import yaml

    from .experiments.promote import promote_diff, promoted
    from .gateway import Gateway

    async def read() -> Any:
        gw = Gateway(args.config)
        try:
            return await gw.experiments.report(args.name)
        finally:
            await gw.aclose()

    import asyncio

    report = asyncio.run(read())
    if args.action == "report":
        print(report.table())
        if args.html:
            Path(args.html).write_text(report.html(), encoding="utf-8")
            print(f"wrote {args.html}")
        return 0
    raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    print(f"verdict: {report.verdict}")
    if not report.promote and not args.force:
        print("hyperion: the report does not favour B; --force promotes anyway", file=sys.stderr)
        return 1
    print(promote_diff(raw, args.name, args.config), end="")
    if args.write:
        Path(args.config).write_text(yaml.safe_dump(promoted(raw, args.name), sort_keys=False), encoding="utf-8")
        print(f"wrote {args.config} (YAML comments are not kept)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .config import GatewayConfig

    cfg = GatewayConfig.from_file(args.config)
    for name, route in cfg.routes.items():
        deps = ", ".join(d.id for d in route.deployments)
        print(f"route {name}: {route.strategy} over {deps}")
    print("config OK")
    return 0


def _keys(args: argparse.Namespace) -> int:
    from . import admin

    cfg = admin.load_config(args.config)
    store = admin.key_store(cfg)

    async def go() -> int:
        if args.keys_command == "create":
            key, rec = await store.create(
                args.name, team=args.team, user=args.user, roles=args.role or ["member"],
                routes=args.route or ["*"], expires_in=args.expires_in,
            )
            print(admin.format_key(rec))
            print(f"key: {key}")
            print("(shown once: store it now; Hyperion keeps only a salted hash)")
        elif args.keys_command == "list":
            rows = await store.list(team=args.team, include_revoked=args.all)
            for rec in rows:
                print(admin.format_key(rec))
            if not rows:
                print("no keys")
        elif args.keys_command == "revoke":
            print(admin.format_key(await store.revoke(args.key_id)))
        elif args.keys_command == "rotate":
            key, rec = await store.rotate(args.key_id)
            print(admin.format_key(rec))
            print(f"key: {key}")
            print(f"(the old key {args.key_id} is revoked; the new one is shown once)")
        await store.aclose()
        return 0

    return admin.run(go())


def _spend(args: argparse.Namespace) -> int:
    from . import admin
    from .governance.spend import format_table

    cfg = admin.load_config(args.config)
    rows = admin.run(admin.spend_report(cfg, args.by, sink=args.sink))
    print(format_table(rows, args.by))
    return 0


def _audit(args: argparse.Namespace) -> int:
    from . import admin
    from .audit import tail_command, verify_command

    spec, audit_cfg = args.sink, None
    if spec is None or args.config is not None:
        cfg = admin.load_config(args.config)
        audit_cfg = cfg.audit
        if spec is None and audit_cfg is None:
            print("hyperion: no audit sink: pass --sink or a --config with an 'audit:' section", file=sys.stderr)
            return 2
        spec = spec or audit_cfg.sink
    if args.audit_command == "tail":
        print(tail_command(spec, args.n))
        return 0
    anchor = args.anchor or (audit_cfg.anchor_path if audit_cfg else None)
    key = (audit_cfg.checkpoint_key if audit_cfg else None) or os.environ.get("HYPERION_AUDIT_KEY")
    code, msg = verify_command(spec, anchor=anchor, key=key, expect_head=args.expect_head,
                               since_checkpoint=args.since_checkpoint, allow_empty=args.allow_empty)
    print(msg, file=sys.stderr if code else sys.stdout)
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hyperion", description="Hyperion LLM gateway")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the scripted failover demo against local mock providers")
    d.add_argument("--config", default=None, help="gateway YAML (default: examples/hyperion.yaml)")
    d.add_argument("--serve", action="store_true",
                   help="the server instead: hyperion serve called by the openai/anthropic SDKs and ChatOpenAI")
    d.set_defaults(func=_demo)
    m = sub.add_parser("mock-provider", help="serve the OpenAI/Anthropic/Gemini mock provider")
    m.add_argument("--host", default="127.0.0.1")
    m.add_argument("--port", type=int, default=8900)
    m.add_argument(
        "--lenient",
        action="store_true",
        help="accept any parseable body (default: refuse what the real APIs refuse, in their error format)",
    )
    m.set_defaults(func=_mock)
    conf = argparse.ArgumentParser(add_help=False)
    conf.add_argument("--config", default=None, help="gateway YAML (its state: section says where state lives)")
    k = sub.add_parser("keys", help="create, list, revoke and rotate virtual keys")
    ks = k.add_subparsers(dest="keys_command", required=True)
    kc = ks.add_parser("create", parents=[conf])
    kc.add_argument("name")
    kc.add_argument("--team")
    kc.add_argument("--user")
    kc.add_argument("--role", action="append", choices=["admin", "member", "viewer"])
    kc.add_argument("--route", action="append", help="allowed route (repeat); default: all")
    kc.add_argument("--expires-in", type=float, default=None, help="seconds")
    kl = ks.add_parser("list", parents=[conf])
    kl.add_argument("--team")
    kl.add_argument("--all", action="store_true", help="include revoked keys")
    for name in ("revoke", "rotate"):
        kr = ks.add_parser(name, parents=[conf])
        kr.add_argument("key_id")
    k.set_defaults(func=_keys)
    sp = sub.add_parser("spend", parents=[conf], help="spend table by key, team, user, route, day or deployment")
    sp.add_argument("--by", default="key")
    sp.add_argument("--sink", default=None, help="read spend from this audit sink spec")
    sp.set_defaults(func=_spend)
    sink = argparse.ArgumentParser(add_help=False, parents=[conf])
    sink.add_argument("--sink", default=None, help="sink spec, e.g. sqlite:///path/audit.db")
    a = sub.add_parser("audit", help="read and verify the audit log")
    asub = a.add_subparsers(dest="audit_command", required=True)
    at = asub.add_parser("tail", parents=[sink])
    at.add_argument("-n", type=int, default=20)
    av = asub.add_parser("verify", parents=[sink], help="check the hash chain (exit 0 ok, 1 failed, 2 usage error)")
    av.add_argument("--anchor", default=None, help="anchor file with the signed head checkpoint (default: audit.anchor_path); "
                    "its key comes from audit.checkpoint_key or $HYPERION_AUDIT_KEY")
    av.add_argument("--expect-head", default=None, metavar="HASH", help="the hash the newest row must have")
    av.add_argument("--since-checkpoint", action="store_true", help="check from the anchored row on, not from genesis")
    av.add_argument("--allow-empty", action="store_true", help="an empty or missing log verifies (default: failure)")
    a.set_defaults(func=_audit)
    sv = sub.add_parser("serve", help="serve the OpenAI/Anthropic-compatible HTTP API (needs the 'server' extra)")
    sv.add_argument("--config", required=True, help="gateway YAML")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8080)
    sv.add_argument("--workers", type=int, default=1, help="worker processes (share state through Redis)")
    sv.add_argument("--allow-anonymous", action="store_true",
                    help="accept model calls without a virtual key (default: 401)")
    sv.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="larger bodies are answered 413")
    sv.add_argument("--graceful-timeout", type=float, default=30.0,
                    help="seconds in-flight requests and streams get to finish on shutdown")
    sv.add_argument("--no-admin", action="store_true", help="do not serve /admin/v1")
    sv.add_argument("--no-metrics", action="store_true", help="do not serve /metrics")
    sv.add_argument("--oidc-issuer", help="accept this issuer's OIDC tokens on the admin API")
    sv.add_argument("--oidc-audience", help="the 'aud' the tokens must carry")
    sv.add_argument("--oidc-jwks-url", help="default: jwks_uri of the issuer's discovery document")
    sv.add_argument("--oidc-roles-claim", default="roles", help="claim with the user's roles/groups (dotted path)")
    sv.add_argument("--oidc-team-claim", default="team")
    sv.add_argument("--oidc-role", action="append", metavar="VALUE=ROLE",
                    help="map a roles-claim value to admin|member|viewer (repeat)")
    sv.add_argument("--oidc-model-calls", action="store_true",
                    help="accept the issuer's tokens on the model endpoints too (the token's user is the budget subject)")
    sv.add_argument("--log-level", default="info")
    sv.add_argument("--access-log", action="store_true")
    sv.add_argument("--otel", action="store_true",
                    help="OpenTelemetry request spans through the global tracer provider (the 'otel' extra)")
    sv.set_defaults(func=_serve)
    ex = sub.add_parser("experiments", help="shadow / split experiments: report, promote")
    ex.add_argument("action", choices=["report", "promote"])
    ex.add_argument("name", help="the experiment (a route's split/shadow name, default '<route>-split' / '-shadow')")
    ex.add_argument("--config", required=True, help="gateway YAML")
    ex.add_argument("--html", default=None, help="report: also write an HTML page with the plots here")
    ex.add_argument("--write", action="store_true", help="promote: rewrite the config file (comments are lost)")
    ex.add_argument("--force", action="store_true", help="promote even when the report favours A")
    ex.set_defaults(func=_experiments)
    c = sub.add_parser("check", help="validate a gateway config file")
    c.add_argument("config")
    c.set_defaults(func=_check)
    cd = sub.add_parser("config-doc", help="print every setting (path, type, default, meaning) as a Markdown table")
    cd.add_argument("--write", metavar="FILE", help="rewrite the settings block of FILE (e.g. README.md) instead")
    cd.set_defaults(func=_config_doc)
    return p


def _config_doc(args: argparse.Namespace) -> int:
    from . import config_doc

    if args.write:
        changed = config_doc.write(args.write)
        print(f"{args.write}: settings table {'rewritten' if changed else 'already current'}")
    else:
        print(config_doc.settings_table())
    return 0


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
