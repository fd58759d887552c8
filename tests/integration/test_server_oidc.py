"""OIDC tokens on the admin API against a real local issuer this test starts: RSA keys generated here,
discovery document and JWKS served over HTTP; key rotation, expiry, wrong audience/issuer, alg none,
a forged signature, and claims mapped to role and team."""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from hyperion_core.server import ServerSettings, create_app
from hyperion_core.server.oidc import OIDCSettings
from hyperion_core.server.testing import ServerThread

AUD = "hyperion-admin"


class Issuer:
    """A minimal OIDC issuer: /.well-known/openid-configuration and /jwks.json over HTTP."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks.json"}
                elif self.path == "/jwks.json":
                    issuer.jwks_fetches += 1
                    body = {"keys": [issuer.jwk(kid, k) for kid, k in list(issuer.keys.items())]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @staticmethod
    def jwk(kid: str, key: rsa.RSAPrivateKey) -> dict:
        nums = key.public_key().public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

        return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(nums.n), "e": b64(nums.e)}

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def token(self, kid: str, *, key: rsa.RSAPrivateKey | None = None, **claims) -> str:
        now = int(time.time())
        body = {"iss": self.url, "aud": AUD, "sub": "alice", "iat": now, "exp": now + 600, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def issuer():
    iss = Issuer()
    iss.add_key("k1")
    yield iss
    iss.httpd.shutdown()


@pytest.fixture
def srv(mock, tmp_path, issuer):
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-upstream", "base_url": mock.base_url("oidc", "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}]}},
        "keys": {"store": "memory"},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit.db"},
        "governance": {"budgets": [{"scope": "team", "id": "ml", "period": "daily", "limit_usd": 5}]},
    }
    oidc = OIDCSettings(issuer=issuer.url, audience=AUD, roles_claim="groups", jwks_refresh_cooldown_s=0,
                        role_map={"platform-admins": "admin", "ml-readers": "viewer"})
    app = create_app(cfg, ServerSettings(oidc=oidc))
    with ServerThread(app) as s:
        s.gw = app.state.gateway
        yield s


def get(srv, path: str, token: str) -> httpx.Response:
    return httpx.get(srv.url + "/admin/v1" + path, headers={"authorization": f"Bearer {token}"}, timeout=60)


def test_tokens_map_to_roles_and_teams(srv, issuer):
    srv.call(srv.gw.keys.create("a", team="ml"))
    srv.call(srv.gw.keys.create("b", team="web"))
    admin = issuer.token("k1", groups=["platform-admins"])
    r = get(srv, "/keys", admin)
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    r = httpx.post(srv.url + "/admin/v1/keys", json={"name": "made-by-sso", "team": "ml"},
                   headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 201
    viewer = issuer.token("k1", sub="bob", groups=["ml-readers"], team="ml")
    assert {k["team"] for k in get(srv, "/keys", viewer).json()["data"]} == {"ml"}
    r = httpx.post(srv.url + "/admin/v1/keys", json={"name": "x"}, headers={"authorization": f"Bearer {viewer}"})
    assert r.status_code == 403
    assert get(srv, "/audit/verify", viewer).status_code == 403
    nobody = issuer.token("k1", sub="eve", groups=["staff"])
    r = get(srv, "/keys", nobody)
    assert r.status_code == 403 and "no Hyperion role" in r.json()["error"]["message"]
    # an OIDC token is for the admin API: model calls take virtual keys
    r = httpx.post(srv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {admin}"},
                   json={"model": "chat", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 401


def test_refused_tokens(srv, issuer):
    admin = {"groups": ["platform-admins"]}
    now = int(time.time())
    cases = {
        "expired": issuer.token("k1", exp=now - 3600, iat=now - 7200, **admin),
        "audience": issuer.token("k1", aud="someone-else", **admin),
        "issuer": issuer.token("k1", iss="https://evil.example", **admin),
        "not valid yet": issuer.token("k1", nbf=now + 3600, **admin),
        "no exp": issuer.token("k1", exp=None, **admin),
        "forged": issuer.token("k1", key=rsa.generate_private_key(public_exponent=65537, key_size=2048), **admin),
        "unknown kid": issuer.token("k9", key=rsa.generate_private_key(public_exponent=65537, key_size=2048), **admin),
    }
    unsigned = jwt.encode({"iss": issuer.url, "aud": AUD, "sub": "mallory", "exp": now + 600, **admin}, None,
                          algorithm="none")
    cases["alg none"] = unsigned
    hs = jwt.encode({"iss": issuer.url, "aud": AUD, "sub": "m", "exp": now + 600, **admin}, "k" * 32,
                    algorithm="HS256", headers={"kid": "k1"})
    cases["hmac"] = hs
    for why, token in cases.items():
        r = get(srv, "/keys", token)
        assert r.status_code == 401, (why, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key", why
        assert token not in r.text
    assert "expired" in get(srv, "/keys", cases["expired"]).json()["error"]["message"]
    assert "audience" in get(srv, "/keys", cases["audience"]).json()["error"]["message"]
    assert "'none' is not accepted" in get(srv, "/keys", cases["alg none"]).json()["error"]["message"]


def test_key_rotation_is_picked_up_without_a_restart(srv, issuer):
    old = issuer.token("k1", groups=["platform-admins"])
    assert get(srv, "/keys", old).status_code == 200
    fetches = issuer.jwks_fetches
    issuer.add_key("k2")  # the issuer rotates: new tokens are signed with k2
    del issuer.keys["k1"]
    new = issuer.token("k2", groups=["platform-admins"])
    assert get(srv, "/keys", new).status_code == 200  # unknown kid -> JWKS fetched again
    assert issuer.jwks_fetches == fetches + 1
    assert get(srv, "/keys", new).status_code == 200  # cached now
    assert issuer.jwks_fetches == fetches + 1


@pytest.fixture
def sso_calls(mock, tmp_path, issuer):
    """``oidc_model_calls``: a user's OIDC token on the model endpoints, the user the budget subject."""
    cfg = {
        "providers": {"p": {"kind": "openai", "api_key": "sk-upstream", "base_url": mock.base_url("oidc-m", "openai")}},
        "routes": {"chat": {"deployments": [{"model": "p/gpt-4o-mini"}]}},
        "keys": {"store": "memory"},
        "audit": {"sink": f"sqlite:///{tmp_path}/audit.db"},
        "governance": {"budgets": [{"scope": "user", "id": "*", "period": "daily", "limit_usd": 0.001}]},
    }
    oidc = OIDCSettings(issuer=issuer.url, audience=AUD, roles_claim="groups", jwks_refresh_cooldown_s=0,
                        role_map={"ml-users": "member", "ml-readers": "viewer"})
    app = create_app(cfg, ServerSettings(oidc=oidc, oidc_model_calls=True))
    with ServerThread(app) as s:
        s.gw = app.state.gateway
        yield s


def test_oidc_tokens_on_model_calls_make_the_user_the_budget_subject(sso_calls, issuer):
    import openai

    srv = sso_calls
    alice = issuer.token("k1", sub="alice", groups=["ml-users"], team="ml")
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key=alice, max_retries=0)
    resp = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
    assert resp.choices[0].message.content
    assert [m.id for m in client.models.list()] == ["chat"]

    async def rows():
        await srv.gw.audit.aflush()
        return await srv.gw.audit.query(limit=10)

    (event,) = srv.call(rows())
    assert (event.user, event.team, event.key_id, event.outcome) == ("alice", "ml", "oidc:alice", "ok")
    (budget,) = srv.call(srv.gw.governance.status({"user": "alice"}))
    assert budget.spent_usd == pytest.approx(event.cost) and budget.spent_usd > 0
    # refused tokens: the SDK's own classes, nothing upstream
    now = int(time.time())
    refused = {
        "expired": issuer.token("k1", sub="alice", groups=["ml-users"], exp=now - 3600, iat=now - 7200),
        "audience": issuer.token("k1", sub="alice", groups=["ml-users"], aud="someone-else"),
        "alg none": jwt.encode({"iss": issuer.url, "aud": AUD, "sub": "mallory", "exp": now + 600,
                                "groups": ["ml-users"]}, None, algorithm="none"),
    }
    for why, token in refused.items():
        with pytest.raises(openai.AuthenticationError) as info:
            openai.OpenAI(base_url=srv.url + "/v1", api_key=token, max_retries=0).chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "hi"}])
        assert "OIDC token refused" in str(info.value), why
    viewer = issuer.token("k1", sub="bob", groups=["ml-readers"], team="ml")
    with pytest.raises(openai.PermissionDeniedError, match="'call'"):
        openai.OpenAI(base_url=srv.url + "/v1", api_key=viewer, max_retries=0).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}])
    # alice's own daily budget ($0.001) runs out; bob's would be separate
    with pytest.raises(openai.RateLimitError, match="user 'alice'"):
        for _ in range(200):
            client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
