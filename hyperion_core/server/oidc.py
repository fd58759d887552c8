"""OIDC bearer tokens (JWTs) for the admin API, checked against the issuer's JWKS with PyJWT.

A token is accepted when its signature verifies with a key of the issuer's JWKS (fetched from the
discovery document's ``jwks_uri``, or ``jwks_url``; cached, and fetched again when a token names a key
id the cache does not have — key rotation — at most once per ``jwks_refresh_cooldown_s``), its
algorithm is one of ``algorithms`` (never ``none``; HMAC algorithms are not accepted either, so a
public key can never be used as a shared secret), and ``iss``, ``aud``, ``exp`` (required) and ``nbf``
hold with ``leeway_s`` of clock skew.

Claims map to a :class:`~hyperion_core.governance.keys.Principal`: ``user_claim`` (default ``sub``) is the
user, ``team_claim`` the team, and the values of ``roles_claim`` (a string or a list; a dotted path such
as ``realm_access.roles`` reaches into objects) are mapped through ``role_map`` to Hyperion roles
(``admin`` / ``member`` / ``viewer``; a value that is itself a role name counts as that role).
A token that maps to no role is refused (403).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidKeyError, PermissionDeniedError
from ..governance.keys import ROLES, Principal

_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


@dataclass(frozen=True)
class OIDCSettings:
    """Where tokens come from and how their claims become a principal."""

    issuer: str
    audience: str
    #: the JWKS endpoint; default: ``jwks_uri`` of ``<issuer>/.well-known/openid-configuration``
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    #: seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat`` (>= 0)
    leeway_s: float = 60.0
    #: seconds a fetched JWKS is trusted before it is fetched again (> 0)
    jwks_cache_s: float = 300.0
    #: least seconds between fetches forced by an unknown key id (0: no limit; each unknown ``kid``
    #: costs the issuer one request)
    jwks_refresh_cooldown_s: float = 10.0
    user_claim: str = "sub"
    team_claim: str = "team"
    roles_claim: str = "roles"
    #: claim value (say a group name) -> Hyperion role
    role_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in _ASYMMETRIC]
        if bad:
            raise ValueError(f"oidc.algorithms: {bad[0]!r} is not an asymmetric JWS algorithm "
                             f"(one of {', '.join(_ASYMMETRIC)})")
        unknown = [r for r in self.role_map.values() if r not in ROLES]
        if unknown:
            raise ValueError(f"oidc.role_map: unknown role {unknown[0]!r} (known: {', '.join(ROLES)})")


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("hk-")


class OIDCVerifier:
    """Validates tokens for one issuer (thread-safe; JWKS fetches run off the event loop)."""

    def __init__(self, settings: OIDCSettings) -> None:
        import jwt

        self.settings = settings
        self._jwt = jwt
        self._client: Any = None
        self._lock = asyncio.Lock()

    def _jwks_url(self) -> str:
        s = self.settings
        if s.jwks_url:
            return s.jwks_url
        url = s.issuer.rstrip("/") + "/.well-known/openid-configuration"
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.loads(resp.read())
        if doc.get("issuer") != s.issuer:
            raise InvalidKeyError(f"OIDC discovery at {url} names issuer {doc.get('issuer')!r}, not {s.issuer!r}")
        return doc["jwks_uri"]

    async def client(self) -> Any:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    url = await asyncio.to_thread(self._jwks_url)
                    s = self.settings
                    self._client = self._jwt.PyJWKClient(url, lifespan=s.jwks_cache_s, timeout=10,
                                                         cooldown_duration=s.jwks_refresh_cooldown_s)
        return self._client

    async def principal(self, token: str) -> Principal:
        """The principal a valid token stands for; :class:`InvalidKeyError` (401) naming why a token
        is refused, :class:`PermissionDeniedError` (403) when it maps to no role."""
        jwt, s = self._jwt, self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidKeyError(f"OIDC token refused: malformed ({exc})") from None
        if header.get("alg") not in s.algorithms:
            raise InvalidKeyError(f"OIDC token refused: algorithm {header.get('alg')!r} is not accepted "
                                  f"(accepted: {', '.join(s.algorithms)})")
        client = await self.client()
        try:
            key = await asyncio.to_thread(client.get_signing_key_from_jwt, token)
            claims = jwt.decode(
                token, key.key, algorithms=list(s.algorithms), audience=s.audience, issuer=s.issuer,
                leeway=s.leeway_s, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidKeyError("OIDC token refused: expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidKeyError(f"OIDC token refused: audience is not {s.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise InvalidKeyError(f"OIDC token refused: issuer is not {s.issuer!r}") from None
        except jwt.ImmatureSignatureError:
            raise InvalidKeyError("OIDC token refused: not valid yet (nbf)") from None
        except jwt.PyJWKClientError as exc:
            raise InvalidKeyError(f"OIDC token refused: no key of the issuer's JWKS verifies it ({exc})") from None
        except jwt.PyJWTError as exc:
            raise InvalidKeyError(f"OIDC token refused: {exc}") from None
        sub = _claim(claims, s.user_claim)
        raw = _claim(claims, s.roles_claim)
        values = [raw] if isinstance(raw, str) else [v for v in raw or () if isinstance(v, str)]
        mapped = (s.role_map.get(v) or (v if v in ROLES else None) for v in values)
        roles = tuple(r for r in dict.fromkeys(mapped) if r)
        if not roles:
            raise PermissionDeniedError(f"OIDC user '{sub}' has no Hyperion role (claim '{s.roles_claim}': {values})")
        team = _claim(claims, s.team_claim)
        return Principal(key_id=f"oidc:{sub}", team=team if isinstance(team, str) else None,
                         user=str(sub) if sub is not None else None, roles=roles, routes=("*",))


__all__ = ["OIDCSettings", "OIDCVerifier", "looks_like_jwt"]
