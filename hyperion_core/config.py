"""Gateway configuration: pydantic models, YAML loading, ``${ENV}`` interpolation, readable errors.

A deployment names its model as ``<provider>/<model>``. ``<provider>`` is either a key of
``providers:`` (an account: kind, credentials, base URL) or a provider kind used with its defaults
(``openai``, ``anthropic``, ``gemini``, ``ollama``, ``vllm`` or any litellm provider such as ``bedrock``).
Every error names its place and, where it can, the fix::

    routes.chat.deployments[1].model: unknown provider 'opnai' (did you mean 'openai'?)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ._text import suggest
from .audit.config import AuditConfig
from .cache.config import CacheSettings, CacheTuning
from .errors import ConfigError
from .experiments.config import ShadowConfig, SplitConfig, experiment_problems
from .governance.config import GovernanceConfig
from .guardrails.config import GuardrailPolicy, GuardrailsConfig
from .hedge import HedgeConfig
from .policy.config import PolicyRule, QualityScore, route_policy_problems

#: provider kinds served by a native adapter, with their wire format and defaults
NATIVE_KINDS: dict[str, dict[str, str | None]] = {
    "openai": {"wire": "openai", "base_url": "https://api.openai.com/v1", "key_env": "OPENAI_API_KEY"},
    "openai_compatible": {"wire": "openai", "base_url": None, "key_env": None},
    "vllm": {"wire": "openai", "base_url": "http://localhost:8000/v1", "key_env": None},
    "ollama": {"wire": "openai", "base_url": "http://localhost:11434/v1", "key_env": None},
    "anthropic": {
        "wire": "anthropic",
        "base_url": "https://api.anthropic.com",
        "key_env": "ANTHROPIC_API_KEY",
    },
    "gemini": {
        "wire": "gemini",
        "base_url": "https://generativelanguage.googleapis.com",
        "key_env": "GEMINI_API_KEY",
    },
}

Strategy = Literal["failover", "weighted", "lowest_latency", "lowest_cost", "policy", "quality"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # .inf / .nan are never settings


class PricingConfig(_Strict):
    """Overrides litellm's price map for one deployment. Units: USD per million tokens."""

    #: USD per million prompt tokens; overrides litellm's price map
    input_per_mtok: float = Field(ge=0)
    #: USD per million output tokens (reasoning tokens included)
    output_per_mtok: float = Field(ge=0)
    #: prompt-cache reads; defaults to the input price
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    #: prompt-cache writes; defaults to the input price
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


class ProviderConfig(_Strict):
    """A provider account. ``kind`` picks the adapter: a native kind or any litellm provider."""

    #: ``openai``, ``anthropic``, ``gemini``, ``ollama``, ``vllm``, ``openai_compatible`` (native adapters) or
    #: any litellm provider (``bedrock``, ``azure``, ...)
    kind: str
    #: the provider's key; write ``${ENV_VAR}`` to read it from the environment. Never logged or audited
    api_key: SecretStr | None = None
    #: the API's base URL; default: the kind's public endpoint (``ollama``: ``http://localhost:11434/v1``)
    base_url: str | None = None
    #: extra HTTP headers sent with every request to this provider
    headers: dict[str, str] = Field(default_factory=dict)
    #: extra keyword arguments for litellm deployments (e.g. ``aws_region_name``)
    litellm_params: dict[str, Any] = Field(default_factory=dict)


class DeploymentConfig(_Strict):
    #: ``<provider>/<model>``, e.g. ``openai/gpt-4o-mini``
    model: str
    #: unique within the route; defaults to ``model``
    name: str | None = None
    #: ``auto`` uses the native adapter when the provider kind has one, else litellm
    adapter: Literal["auto", "native", "litellm"] = "auto"
    #: relative share for the ``weighted`` strategy (0 keeps it as a fallback only)
    weight: float = Field(default=1.0, ge=0)
    #: per-attempt timeout in seconds; defaults to the route's ``attempt_timeout``
    timeout: float | None = Field(default=None, gt=0)
    pricing: PricingConfig | None = None
    #: context window in tokens; also spelt ``context_window``. Unset: litellm's map, else 8192 for
    #: OpenAI-wire kinds (4096 for ``ollama``, its default ``num_ctx``), else unknown
    max_input_tokens: int | None = Field(default=None, gt=0)
    #: most tokens one answer may have (unset: litellm's map, else unknown)
    max_output_tokens: int | None = Field(default=None, gt=0)
    #: does the model take tools? Unset: litellm's map, else yes for OpenAI-wire kinds (``openai``,
    #: ``openai_compatible``, ``vllm``, ``ollama``), else no. A route calls tools only if all its deployments do
    function_calling: bool | None = None
    #: default request parameters for this deployment (a request's own values win)
    params: dict[str, Any] = Field(default_factory=dict)
    #: the application's current direct path (experiment reports label it ``direct``)
    direct: bool = False
    #: quality score (0..1) per task for the ``quality`` strategy, e.g. ``{default: 0.8, code: 0.9}``;
    #: scores set at run time (``Gateway.set_quality``) win
    quality: dict[str, QualityScore] | None = None

    @model_validator(mode="before")
    @classmethod
    def _context_window_alias(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "context_window" in data:
            data = dict(data)
            window = data.pop("context_window")
            if window is not None and (isinstance(window, bool) or not str(window).isdigit() or int(window) < 1):
                raise ValueError(f"context_window: must be a positive whole number of tokens, got {window!r}")
            if data.get("max_input_tokens") not in (None, window):
                raise ValueError(
                    "context_window and max_input_tokens are the same setting (the model's context window in "
                    f"tokens) and disagree ({window!r} vs {data['max_input_tokens']!r}): keep one"
                )
            data["max_input_tokens"] = window
        return data

    @field_validator("model")
    @classmethod
    def _has_provider(cls, v: str) -> str:
        provider, sep, model = v.partition("/")
        if not sep or not provider or not model:
            raise ValueError(f"'{v}' must look like '<provider>/<model>', e.g. 'openai/gpt-4o-mini'")
        return v

    @property
    def provider(self) -> str:
        return self.model.partition("/")[0]

    @property
    def upstream_model(self) -> str:
        return self.model.partition("/")[2]

    @property
    def id(self) -> str:
        return self.name or self.model


class BreakerConfig(_Strict):
    """Per-deployment circuit breaker: closed -> open -> half-open (one probe) -> closed."""

    #: per-deployment circuit breaker: skip a deployment that keeps failing until a probe succeeds
    enabled: bool = True
    #: consecutive failures (of errors that fail over) that open the breaker; >= 1
    failure_threshold: int = Field(default=5, ge=1)
    #: seconds the breaker stays open before a half-open probe (a 429's Retry-After sets its own cooldown,
    #: exactly that long, and does not count as a failure)
    cooldown: float = Field(default=30.0, ge=0)
    #: also open when this share of the calls in the last ``window`` seconds failed (0 < rate <= 1), once
    #: at least ``min_calls`` were made; unset (default): consecutive failures only. 50% errors never
    #: trip a consecutive-failures threshold; ``0.3`` with the defaults below catches them
    failure_rate: float | None = Field(default=None, gt=0, le=1)
    #: seconds of call history the ``failure_rate`` is computed over (> 0)
    window: float = Field(default=30.0, gt=0)
    #: calls within ``window`` before ``failure_rate`` may open the breaker (>= 1)
    min_calls: int = Field(default=10, ge=1)


class RetryConfig(_Strict):
    """Retries of one deployment before failing over. Backoff: ``min(max, base * 2**n)``, full jitter."""

    #: extra attempts on the same deployment for retryable errors (0 = none)
    attempts: int = Field(default=1, ge=0, le=10)
    #: seconds
    backoff_base: float = Field(default=0.2, ge=0)
    #: seconds
    backoff_max: float = Field(default=5.0, ge=0)


class RouteConfig(_Strict):
    #: ``chat`` (acomplete / astream) or ``embedding`` (aembed)
    kind: Literal["chat", "embedding"] = "chat"
    #: which deployment a request tries first: in order (``failover``), by ``weight``, the fastest (EWMA) or
    #: the cheapest; the others follow on failure. ``policy``: the first of ``policy``'s rules that matches the
    #: request; ``quality``: the cheapest deployment scoring within ``quality_margin`` of the best for the task
    strategy: Strategy = "failover"
    #: ``strategy: policy``: ordered rules (``name``, ``when``, ``use``, ``then``, ``fallback``); the first match wins
    policy: list[PolicyRule] | None = None
    #: ``quality``: deployments scoring at least the best minus this (0..1) are equals; the cheapest answers
    quality_margin: float = Field(default=0.05, ge=0, le=1)
    #: ``quality``: a request's task is its metadata ``task``, else its caller tag after this prefix (``task:code``)
    quality_tag_prefix: str = Field(default="task:", min_length=1)
    #: the models that serve this route, at least one
    deployments: list[DeploymentConfig] = Field(min_length=1)
    #: total deadline in seconds for a request, across retries and failover
    timeout: float = Field(default=60.0, gt=0)
    #: seconds per attempt (a deployment's ``timeout`` wins); default: the remaining deadline
    attempt_timeout: float | None = Field(default=None, gt=0)
    #: streams: seconds to the first chunk before the attempt counts as failed
    first_token_timeout: float | None = Field(default=None, gt=0)
    #: streams: seconds of silence between chunks after the first that count as a cut stream; unset:
    #: ``first_token_timeout``, else ``attempt_timeout``, else 30
    stream_idle_timeout: float | None = Field(default=None, gt=0)
    #: streams: seconds from the request to the last chunk, resumes included (the deadline still holds
    #: once chunks flow); unset: ``timeout``
    stream_timeout: float | None = Field(default=None, gt=0)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    #: continue a stream cut after its first chunk on the next deployment (one seamless stream)
    stream_resume: bool = False
    #: route to use when a request exceeds this route's context window
    context_window_fallback: str | None = None
    #: request parameters this route takes beyond the OpenAI Chat Completions ones and the native wires'
    #: own names (``thinking``, ``safetySettings``, ...), e.g. a litellm provider's extras; ``["*"]`` takes
    #: any. Anything else is refused (``model`` always: the deployments own it)
    allow_params: list[str] = Field(default_factory=list)
    #: output tokens (> 0) a request that sets no ``max_tokens`` / ``max_completion_tokens`` may
    #: produce: sent upstream as its ``max_tokens``, and what budgets reserve for it. Unset: the
    #: request may use the model's whole output window, and budgets reserve all of it
    default_max_tokens: int | None = Field(default=None, gt=0)
    #: EWMA smoothing for ``lowest_latency`` (weight of the newest sample, 0 < alpha <= 1)
    latency_alpha: float = Field(default=0.3, gt=0, le=1)
    #: response caching for this route (absent = no caching); see ``hyperion_core.cache.CacheSettings``
    cache: CacheSettings | None = None
    #: PII redaction and prompt-injection detection for this route (absent = none; teams and keys may get
    #: another policy through the top-level ``guardrails``)
    guardrails: GuardrailPolicy | None = None
    #: hedged requests: race the next deployment when the first has not answered (streams: no first
    #: chunk) after ``after_ms`` (absent = no hedging); see ``hyperion_core.hedge.HedgeConfig``
    hedge: HedgeConfig | None = None
    #: mirror a sample to another route in the background (``hyperion_core.experiments``)
    shadow: ShadowConfig | None = None
    #: send a sticky share of traffic to variant B, a deployment or a route (``hyperion_core.experiments``)
    split: SplitConfig | None = None


class StateConfig(_Strict):
    """Where shared state lives: ``memory`` (one process, the embedded default) or ``redis``
    (shared by processes and replicas)."""

    #: ``memory``: one process, nothing to run; ``redis``: cache, budgets, rate limits and keys shared by
    #: every process
    backend: Literal["memory", "redis"] = "memory"
    #: required with ``backend: redis``, e.g. ``redis://localhost:6379/0``
    redis_url: str | None = None
    #: prefix of every Redis key Hyperion writes
    prefix: str = Field(default="hyperion", min_length=1)
    #: connections in the pool shared by keys and governance (>= 1); more concurrent requests wait
    #: for a free one instead of failing
    max_connections: int = Field(default=64, ge=1)
    #: seconds a request waits for a free pooled connection before it fails (> 0)
    pool_timeout: float = Field(default=10.0, gt=0)
    #: seconds a Redis command (keys, governance) may go unanswered before it fails (> 0): a hung
    #: server fails requests' admission instead of hanging them; a failed settle is written later
    socket_timeout: float = Field(default=5.0, gt=0)
    #: folder of the embedded files (keys and audit SQLite databases)
    path: str = ".hyperion"


class CacheConfig(CacheTuning):
    """Gateway-wide cache settings (each route says whether and how it caches). Where the shared
    tiers live follows ``state``; how they use Redis is the settings below."""

    #: ``wordllama`` (offline default) | ``minilm`` (the ``embeddings`` extra) | ``route:<embedding route>``
    embedder: str = "wordllama"


class KeysConfig(_Strict):
    """Virtual keys (``hyperion keys create``). A request that names a key is always checked."""

    #: refuse requests that carry no virtual key
    required: bool = False
    #: ``auto``: Redis when ``state.backend`` is redis, else a SQLite file in ``state.path``
    store: Literal["auto", "memory", "sqlite", "redis"] = "auto"


class GatewayConfig(_Strict):
    #: provider accounts by name; a deployment's ``<provider>/<model>`` names one (or a kind, used with its
    #: defaults)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    #: routes by name: what callers ask for (``acomplete("chat", ...)``, ``HyperionChat(model="chat")``)
    routes: dict[str, RouteConfig] = Field(min_length=1)
    state: StateConfig = Field(default_factory=StateConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    keys: KeysConfig = Field(default_factory=KeysConfig)
    #: budgets, rate limits, anomaly alerts (absent = none); backend follows ``state`` unless set
    governance: GovernanceConfig | None = None
    #: the audit log (absent = no audit); ``sink: sqlite://.hyperion/audit.db`` is the embedded default
    audit: AuditConfig | None = None
    #: named guardrail policies for teams, keys and calls made by frameworks' own clients (absent = only
    #: the routes' own ``guardrails``)
    guardrails: GuardrailsConfig | None = None

    @classmethod
    def load(cls, data: Mapping[str, Any] | GatewayConfig, *, env: Mapping[str, str] | None = None):
        """Validate a mapping (as read from YAML). Raises :class:`ConfigError` listing every problem."""
        if isinstance(data, GatewayConfig):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be a mapping, got {type(data).__name__}")
        problems: list[str] = []
        data = _interpolate(data, env if env is not None else os.environ, "", problems)
        if problems:
            raise _config_error(problems)
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            raise _config_error([_format_pydantic(e) for e in exc.errors()]) from None
        problems = _cross_check(cfg)
        if problems:
            raise _config_error(problems)
        return cfg

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None):
        import yaml  # config loading is not a hot path

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read config file ({exc.strerror})") from None
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
            raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
        return cls.load(data or {}, env=env)


# -- helpers -------------------------------------------------------------------------------------

#: most nodes a config may expand to once its YAML aliases are followed (a real config has hundreds;
#: "billion laughs" documents have billions)
MAX_YAML_NODES = 100_000


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that refuses what would silently change or hang a config: a key given twice
    in one mapping (the second would win: a second ``governance:`` block dropping every budget), and
    aliases that expand past :data:`MAX_YAML_NODES` nodes. Raises ``yaml.YAMLError`` with a mark."""
    import yaml

    class _Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        f"while reading the mapping at line {node.start_mark.line + 1}",
                        node.start_mark,
                        f"key '{key}' appears twice (first at line {seen[key].line + 1}): the second would "
                        "silently replace the first; keep one",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark
            return super().construct_mapping(node, deep=deep)

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _bounded(node, yaml)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _bounded(root: Any, yaml: Any) -> None:
    """Count the nodes ``root`` expands to (aliases followed), memoised per node: linear in the
    document, so an alias bomb is refused before anything is expanded."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being counted: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = (
            [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode)
            else list(node.value) if isinstance(node, yaml.SequenceNode) else []
        )
        if not done:
            if id(node) in open_:
                raise yaml.constructor.ConstructorError(
                    None, None, "an alias refers to a node that contains it (a recursive config)", node.start_mark
                )
            open_.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        open_.discard(id(node))
        sizes[id(node)] = total = 1 + sum(sizes.get(id(c), 1) for c in children)
        if total > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                None, None,
                f"the document expands to more than {MAX_YAML_NODES:,} values through its aliases "
                "(an alias bomb?); a config has far fewer",
                node.start_mark,
            )

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _interpolate(node: Any, env: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append(
                f"{path or '<root>'}: environment variable {name} is not set "
                f"(set it, or write ${{{name}:-default}})"
            )
            return ""

        return _ENV.sub(sub, node)
    if isinstance(node, Mapping):
        return {k: _interpolate(v, env, _join(path, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, env, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    return node


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _format_pydantic(err: Mapping[str, Any]) -> str:
    loc = _format_loc(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        parent, _, key = loc.rpartition(".")
        return f"{loc}: unknown key '{key}'" + suggest(key, _all_field_names())
    if kind == "missing":
        return f"{loc}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "literal_error":
        msg = f"{msg}, got {err.get('input')!r}"
    return f"{loc}: {msg}"


def _all_field_names() -> set[str]:
    from .cache import config as cc
    from .governance import config as gc

    models = (GatewayConfig, RouteConfig, DeploymentConfig, ProviderConfig, PricingConfig, BreakerConfig, RetryConfig,
              StateConfig, CacheConfig, KeysConfig, AuditConfig, cc.CacheSettings, cc.L1Settings, cc.L2Settings,
              cc.SemanticSettings, cc.CoalesceSettings, cc.GreyZone, gc.GovernanceConfig, gc.BudgetConfig,
              gc.RateLimitConfig, gc.AnomalyConfig, gc.AlertSinkConfig, gc.AnomalyHardLimit)
    return {f for m in models for f in m.model_fields} | {"context_window"}


def _config_error(problems: list[str]) -> ConfigError:
    head = problems[0] if len(problems) == 1 else f"{len(problems)} problems in config:\n  " + "\n  ".join(
        problems
    )
    return ConfigError(head, problems)


_litellm_providers: frozenset[str] | None = None


def litellm_providers() -> frozenset[str]:
    """litellm's provider names, read from its own data file (no ``import litellm``: it costs ~2 s)."""
    global _litellm_providers
    if _litellm_providers is None:
        import importlib.util

        import orjson

        names: set[str] = set()
        spec = importlib.util.find_spec("litellm")
        if spec and spec.submodule_search_locations:
            f = Path(next(iter(spec.submodule_search_locations))) / "provider_endpoints_support_backup.json"
            try:
                names = set(orjson.loads(f.read_bytes()).get("providers", {}))
            except (OSError, ValueError):
                names = set()
        _litellm_providers = frozenset(names)
    return _litellm_providers


def provider_kind(cfg: GatewayConfig, provider: str) -> str | None:
    """The kind behind a deployment's provider prefix, or ``None`` if nothing knows the name."""
    if provider in cfg.providers:
        return cfg.providers[provider].kind
    if provider in NATIVE_KINDS or provider in litellm_providers():
        return provider
    return None


def _cross_check(cfg: GatewayConfig) -> list[str]:
    problems: list[str] = []
    for name, prov in cfg.providers.items():
        if prov.kind not in NATIVE_KINDS and prov.kind not in litellm_providers():
            problems.append(
                f"providers.{name}.kind: unknown provider kind '{prov.kind}'"
                + suggest(prov.kind, set(NATIVE_KINDS) | litellm_providers())
            )
        elif prov.kind == "openai_compatible" and not prov.base_url:
            problems.append(f"providers.{name}.base_url: required for kind 'openai_compatible'")
    if cfg.keys.store == "redis" and not cfg.state.redis_url:
        problems.append("keys.store: 'redis' needs state.redis_url")
    if cfg.state.backend == "redis" and not cfg.state.redis_url:
        problems.append("state.redis_url: required when state.backend is 'redis' (e.g. redis://localhost:6379/0)")
    emb = cfg.cache.embedder
    if emb.startswith("route:") and emb[6:] not in cfg.routes:
        problems.append(f"cache.embedder: unknown route '{emb[6:]}'" + suggest(emb[6:], set(cfg.routes)))
    elif emb.startswith("route:") and cfg.routes[emb[6:]].kind != "embedding":
        problems.append(f"cache.embedder: route '{emb[6:]}' is not an embedding route")
    elif not emb.startswith("route:") and emb not in ("wordllama", "minilm"):
        problems.append(f"cache.embedder: unknown embedder '{emb}' (wordllama, minilm or route:<name>)")
    for rname, route in cfg.routes.items():
        seen: set[str] = set()
        for i, dep in enumerate(route.deployments):
            where = f"routes.{rname}.deployments[{i}]"
            if provider_kind(cfg, dep.provider) is None:
                known = set(cfg.providers) | set(NATIVE_KINDS)
                problems.append(
                    f"{where}.model: unknown provider '{dep.provider}'"
                    + (suggest(dep.provider, known) or suggest(dep.provider, litellm_providers()))
                )
            elif dep.adapter == "native":
                kind = provider_kind(cfg, dep.provider)
                if kind not in NATIVE_KINDS:
                    problems.append(
                        f"{where}.adapter: provider kind '{kind}' has no native adapter "
                        "(use adapter: litellm or auto)"
                    )
            if route.kind == "embedding" and dep.function_calling is not None:
                problems.append(f"{where}.function_calling: only chat routes call tools (route '{rname}' is an embedding route)")
            if dep.id in seen:
                problems.append(f"{where}.name: duplicate deployment '{dep.id}' in route '{rname}' (set name:)")
            seen.add(dep.id)
        fb = route.context_window_fallback
        if fb is not None and fb not in cfg.routes:
            problems.append(
                f"routes.{rname}.context_window_fallback: unknown route '{fb}'" + suggest(fb, set(cfg.routes))
            )
        elif fb == rname:
            problems.append(f"routes.{rname}.context_window_fallback: a route cannot fall back to itself")
        gz = route.cache.semantic.grey_zone if route.cache else None
        if gz is not None and gz.route not in cfg.routes:
            problems.append(
                f"routes.{rname}.cache.semantic.grey_zone.route: unknown route '{gz.route}'" + suggest(gz.route, set(cfg.routes))
            )
        problems += route_policy_problems(rname, route) + experiment_problems(rname, route, cfg.routes)
        if route.strategy == "weighted" and not any(d.weight > 0 for d in route.deployments):
            problems.append(f"routes.{rname}.deployments: strategy 'weighted' needs a weight above 0")
    return problems


__all__ = [
    "GatewayConfig",
    "RouteConfig",
    "DeploymentConfig",
    "ProviderConfig",
    "PricingConfig",
    "BreakerConfig",
    "RetryConfig",
    "StateConfig",
    "CacheConfig",
    "KeysConfig",
    "NATIVE_KINDS",
    "litellm_providers",
    "provider_kind",
    "suggest",
]
