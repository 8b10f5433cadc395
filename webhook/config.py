"""Configuration: one YAML file, checked against ``config.schema.json``, built into frozen objects.

Each section's dataclass lives with the stage that reads it (webhook/spool/settings.py, ...),
and its defaults only there; this module assembles the sections into the root ``Config``, so
that a stage is handed its section and never the whole. The schema rejects unknown keys so
that a typo is an error rather than a silently ignored option.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from webhook.access.settings import AccessConfig, parse_access
from webhook.core.findings import CATALOG
from webhook.core.net import NetworkError, is_loopback, parse_networks
from webhook.core.paths import in_data_dir
from webhook.core.patterns import Matcher
from webhook.dedupe import DedupeConfig
from webhook.detect.settings import (
    ChangeWindow,
    DeploymentIdentities,
    DetectionsConfig,
    Exceptions,
    default_rules,
)
from webhook.enrich.settings import ActorsConfig, ChangeConfig, FindingsConfig
from webhook.errors import ConfigError
from webhook.filter import DEFAULT_FILTER, FilterSpec, Rule
from webhook.log import LogConfig
from webhook.record.line import ACCESS, ACCESS_SUMMARY, ALERT, AUDIT
from webhook.redact.settings import RedactionConfig
from webhook.sinks import sink_types
from webhook.sinks.base import BatchOptions, RetryOptions, SinkSettings
from webhook.sources.aks import cluster_of
from webhook.sources.settings import SourcesConfig, parse_sources
from webhook.spool.settings import DeadLetterConfig, SpoolConfig
from webhook.state.settings import StateConfig

if TYPE_CHECKING:
    import jsonschema

__all__ = [
    "Config",
    "check_listen",
    "config_schema",
    "default_sinks",
    "describe",
    "jsonl_sink_for",
    "known_clusters",
    "load_config",
    "parse_config",
    "shared_audit_files",
    "validate_config",
    "with_overrides",
]

T = TypeVar("T")

# With access logs on, the default sinks keep them in their own file (and rotation), so that
# a flood of access lines cannot rotate the audit history away. Alerts are few and stay with
# the audit records.
# a flood of access lines cannot rotate the audit history away. Alerts are few and
# stay with the audit records.
AUDIT_RECORD_TYPES: Final = (AUDIT, ALERT)
ACCESS_RECORD_TYPES: Final = (ACCESS, ACCESS_SUMMARY)


@functools.cache
def default_sinks(access: bool) -> tuple[SinkSettings, ...]:
    """The sinks when the config names none: ``records.jsonl`` for every type, or with access
    logs on, ``records.jsonl`` for audit records and alerts and ``access.jsonl`` for the rest.

    Cached: ``Config`` recognizes these tuples by identity, so that ``replace(config,
    access=...)`` derives them again; a configured list is never touched."""
    if not access:
        return (_sink({"type": "jsonl"}),)
    return (
        _sink({"type": "jsonl", "record_types": list(AUDIT_RECORD_TYPES)}),
        _sink(
            {
                "type": "jsonl",
                "name": "access-jsonl",
                "path": "access.jsonl",
                "record_types": list(ACCESS_RECORD_TYPES),
            }
        ),
    )


def _default_sinks() -> tuple[SinkSettings, ...]:
    return default_sinks(False)


_MiB: Final = 1024 * 1024


# The server's section stays here: the server sits above config and is given the whole Config;
# the stages below config each own their section's dataclass.
@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    reload_interval_s: float = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterAuth:
    """One ``server.auth.clusters`` entry: credentials that speak for that cluster alone."""

    client_subjects: tuple[str, ...] = ()
    bearer_token_files: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthConfig:
    # The global credentials speak for the configured ``cluster``; ``clusters`` bind others.
    bearer_token_files: tuple[Path, ...] = ()
    client_subjects: tuple[str, ...] = ()
    clusters: Mapping[str, ClusterAuth] = field(default_factory=dict)
    require: Literal["any", "all"] = "any"
    # HTTPS with neither client_ca_file nor any bearer token file on a non-loopback address
    allow_unauthenticated: bool = False
    protect_metrics: bool = False  # /metrics (and /readyz's detail) need the /audit credentials

    @property
    def has_tokens(self) -> bool:
        """Whether any bearer token file is configured, global or bound to a cluster."""
        return bool(self.bearer_token_files) or any(c.bearer_token_files for c in self.clusters.values())


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 9440
    insecure_http: bool = False
    tls: TlsConfig | None = None
    auth: AuthConfig = field(default_factory=AuthConfig)
    max_body_bytes: int = 64 * _MiB
    max_events_per_request: int = 10_000
    max_event_bytes: int = 16 * _MiB
    max_concurrent_requests: int = 64
    workers: int = 1
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    body_timeout_s: float = 30.0
    keepalive_timeout_s: float = 75.0
    shutdown_timeout_s: float = 20.0
    # Before authentication: open connections (TLS handshakes included) cost memory each.
    max_connections: int = 1024
    tls_handshake_timeout_s: float = 10.0
    header_timeout_s: float = 10.0  # for a new connection's first request head


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    cluster: str = "default"
    data_dir: Path = Path("ingress-audit-data")
    server: ServerConfig = field(default_factory=ServerConfig)
    log: LogConfig = field(default_factory=LogConfig)
    dedupe: DedupeConfig = field(default_factory=DedupeConfig)
    filter: FilterSpec = DEFAULT_FILTER
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    spool: SpoolConfig = field(default_factory=SpoolConfig)
    sinks: tuple[SinkSettings, ...] = field(default_factory=_default_sinks)
    dead_letter: DeadLetterConfig = field(default_factory=DeadLetterConfig)
    state: StateConfig = field(default_factory=StateConfig)
    change: ChangeConfig = field(default_factory=ChangeConfig)
    actors: ActorsConfig = field(default_factory=ActorsConfig)
    findings: FindingsConfig = field(default_factory=FindingsConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    detections: DetectionsConfig = field(default_factory=DetectionsConfig)

    def __post_init__(self) -> None:
        if self.sinks is default_sinks(False) or self.sinks is default_sinks(True):
            object.__setattr__(self, "sinks", default_sinks(self.access.enabled))

    def in_data_dir(self, path: Path) -> Path:
        """Relative paths in the config are relative to the data dir."""
        return in_data_dir(self.data_dir, path)


@functools.cache
def config_schema() -> dict[str, Any]:
    """The shipped schema, with one ``sinks`` branch per registered sink type."""
    import yaml  # here, not at the top: the worker processes import Config, never this

    text = importlib.resources.files("webhook").joinpath("config.schema.json").read_text("utf-8")
    schema: dict[str, Any] = yaml.safe_load(text)
    common = schema["$defs"]["sink_common"]
    branches: list[tuple[str, dict[str, Any]]] = []
    for name, sink_type in sorted(sink_types().items()):
        branches.append(
            (
                name,
                {
                    "type": "object",
                    "description": sink_type.description,
                    "additionalProperties": False,
                    "required": ["type", *sink_type.required],
                    "properties": {**common, "type": {"const": name}, **sink_type.properties},
                },
            )
        )
    schema["$defs"]["sink"] = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(sink_types())}},
        # if/then per type, so that errors name the offending key rather than "oneOf"
        "allOf": [
            {"if": {"properties": {"type": {"const": name}}}, "then": branch} for name, branch in branches
        ],
    }
    return schema


def validate_config(raw: object) -> tuple[str, ...]:
    """Every schema error as ``path: problem``; never echoes the offending value."""
    import jsonschema  # here, not at the top: the worker processes import Config, never this

    validator = jsonschema.Draft202012Validator(config_schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    return tuple(f"{e.json_path}: fails '{e.validator}' ({_hint(e)})" for e in errors)


def _hint(error: jsonschema.ValidationError) -> str:
    """What the schema expected, phrased without the value that was given."""
    instance: Any = error.instance
    schema: Any = error.schema
    allowed: Any = error.validator_value
    if error.validator == "additionalProperties":
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        return "unknown key " + ", ".join(repr(k) for k in extra)
    if error.validator == "required":
        missing = [k for k in allowed if k not in instance]
        return "missing " + ", ".join(repr(k) for k in missing)
    if error.validator in ("enum", "const"):
        return "allowed: " + ", ".join(map(repr, allowed if isinstance(allowed, list) else [allowed]))
    expected = f"expected {error.validator} {error.validator_value!r}"
    if "propertyNames" in error.relative_schema_path:
        expected = f"a name there: {expected}"  # the path is the mapping's, not the name's
    return expected[:200]


def load_config(path: Path | None) -> Config:
    """Read, validate and build the config; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}") from None
    return parse_config({} if raw is None else raw, source=str(path))


def parse_config(raw: object, *, source: str = "config") -> Config:
    errors = validate_config(raw)
    if errors:
        raise ConfigError(f"{source} is not valid: {len(errors)} error(s)", errors)
    if not isinstance(raw, Mapping):  # the schema rules it out; a check, not an assert, holds under -O
        raise ConfigError(f"{source} is not valid", ("$: not a mapping",))
    base = Config()
    config = Config(
        cluster=raw.get("cluster", base.cluster),
        data_dir=Path(raw.get("data_dir", base.data_dir)),
        server=_server(raw.get("server") or {}),
        log=_section(LogConfig, raw.get("log")),
        dedupe=_section(DedupeConfig, raw.get("dedupe")),
        filter=_filter(raw.get("filter")),
        redaction=_section(RedactionConfig, raw.get("redaction"), paths=("fingerprint_key_file",)),
        spool=_section(SpoolConfig, raw.get("spool"), paths=("path",)),
        sinks=tuple(_sink(s) for s in raw["sinks"]) if "sinks" in raw else default_sinks(False),
        dead_letter=_section(DeadLetterConfig, raw.get("dead_letter"), paths=("path",)),
        state=_section(StateConfig, raw.get("state"), paths=("path", "password_file")),
        change=_section(ChangeConfig, raw.get("change"), tuples=("ignore_paths",)),
        actors=_actors(raw.get("actors")),
        findings=_findings(raw.get("findings")),
        access=parse_access(raw.get("access")),
        sources=parse_sources(raw.get("sources")),
        detections=_detections(raw.get("detections")),
    )
    names = [sink.name for sink in config.sinks]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"{source} is not valid", ("$.sinks: names must be unique (they name each sink's cursor)",)
        )
    return config


def _actors(raw: Mapping[str, Any] | None) -> ActorsConfig:
    options = {key: tuple(value) for key, value in (raw or {}).items()}
    try:
        parse_networks(options.get("trusted_cidrs", ()), where="$.actors.trusted_cidrs")
    except NetworkError as exc:
        raise ConfigError("actors section is not valid", exc.problems) from None
    return ActorsConfig(**options)


def _findings(raw: Mapping[str, Any] | None) -> FindingsConfig:
    options = dict(raw or {})
    disabled = frozenset(options.get("disabled", ()))
    severity = dict(options.get("severity", {}))
    unknown = sorted((disabled | set(severity)) - set(CATALOG))
    if unknown:
        raise ConfigError(
            "findings section is not valid",
            tuple(f"$.findings: unknown finding id {name!r} (see docs/findings.md)" for name in unknown),
        )
    return FindingsConfig(
        disabled=disabled,
        severity=severity,
        internal_hosts=tuple(options.get("internal_hosts", FindingsConfig().internal_hosts)),
    )


def _exceptions(raw: Mapping[str, Any] | None, path: str, problems: list[str]) -> Exceptions:
    options = {key: tuple(value) for key, value in (raw or {}).items()}
    try:
        parse_networks(options.get("source_cidrs", ()), where=f"{path}.source_cidrs")
    except NetworkError as exc:
        problems.extend(exc.problems)
    return Exceptions(**options)


def _change_window(raw: Mapping[str, Any], path: str, problems: list[str]) -> ChangeWindow:
    base = ChangeWindow()
    window = ChangeWindow(
        days=tuple(raw.get("days", base.days)),
        start=time.fromisoformat(raw["start"]) if "start" in raw else base.start,
        end=time.fromisoformat(raw["end"]) if "end" in raw else base.end,
        timezone=raw.get("timezone", base.timezone),
    )
    if window.timezone.upper() != "UTC":
        try:
            zoneinfo.ZoneInfo(window.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(f"{path}.timezone: unknown time zone")
    return window


def _detections(raw: Mapping[str, Any] | None) -> DetectionsConfig:
    options = dict(raw or {})
    problems: list[str] = []
    base = DetectionsConfig()
    rules = default_rules()
    for rule_id, rule_raw in (options.get("rules") or {}).items():
        rule = dict(rule_raw)
        path = f"$.detections.rules['{rule_id}']"  # as jsonschema writes a key with dashes
        default = rules[rule_id]
        if "exceptions" in rule:
            rule["exceptions"] = _exceptions(rule["exceptions"], f"{path}.exceptions", problems)
        rules[rule_id] = replace(default, **rule)
    identities = options.get("deployment_identities") or {}
    config = DetectionsConfig(
        enabled=options.get("enabled", base.enabled),
        max_keys=options.get("max_keys", base.max_keys),
        findings_min_severity=options.get("findings_min_severity", base.findings_min_severity),
        exceptions=_exceptions(options.get("exceptions"), "$.detections.exceptions", problems),
        deployment_identities=DeploymentIdentities(**{k: tuple(v) for k, v in identities.items()}),
        change_windows=tuple(
            _change_window(w, f"$.detections.change_windows[{i}]", problems)
            for i, w in enumerate(options.get("change_windows") or ())
        ),
        rules=rules,
    )
    if problems:
        raise ConfigError("detections section is not valid", tuple(problems))
    return config


def _section(
    cls: type[T], raw: Mapping[str, Any] | None, *, paths: tuple[str, ...] = (), tuples: tuple[str, ...] = ()
) -> T:
    """A flat section as the schema passed it, its ``paths`` keys made paths (or tuples of paths,
    from a list) and its ``tuples`` keys tuples; the defaults are the dataclass's own."""
    options = dict(raw or {})
    for key in paths:
        value = options.get(key)
        if isinstance(value, list):
            options[key] = tuple(Path(item) for item in value)
        elif value is not None:
            options[key] = Path(value)
    for key in tuples:
        if key in options:
            options[key] = tuple(options[key])
    return cls(**options)


def _server(raw: Mapping[str, Any]) -> ServerConfig:
    options = dict(raw)
    tls = options.pop("tls", None)
    auth = options.pop("auth", None)
    server = ServerConfig(
        **options,
        tls=None
        if tls is None
        else _section(TlsConfig, tls, paths=("cert_file", "key_file", "client_ca_file")),
        auth=_auth(auth or {}),
    )
    problems = []
    owners: dict[str, AuthConfig | ClusterAuth] = {"$.server.auth": server.auth}
    # Named as jsonschema writes a key with dashes, like its own errors.
    owners.update((f"$.server.auth.clusters['{name}']", c) for name, c in server.auth.clusters.items())
    for where, owner in owners.items():
        if owner.bearer_token_files and server.tls is None:
            problems.append(
                f"{where}.bearer_token_files: requires server.tls (the apiserver "
                "sends a bearer token only over https)"
            )
        if owner.client_subjects and (server.tls is None or server.tls.client_ca_file is None):
            problems.append(f"{where}.client_subjects: requires server.tls.client_ca_file")
    problems += _bound_twice(owners)
    if problems:
        raise ConfigError("server section is not consistent", tuple(problems))
    return server


def _auth(raw: Mapping[str, Any]) -> AuthConfig:
    options = dict(raw)
    clusters = {
        name: ClusterAuth(
            client_subjects=tuple(entry.get("client_subjects", ())),
            bearer_token_files=tuple(Path(p) for p in entry.get("bearer_token_files", ())),
        )
        for name, entry in (options.pop("clusters", None) or {}).items()
    }
    auth = _section(AuthConfig, options, paths=("bearer_token_files",), tuples=("client_subjects",))
    return replace(auth, clusters=clusters)


def _bound_twice(owners: Mapping[str, AuthConfig | ClusterAuth]) -> list[str]:
    """A subject or token file bound to two owners (global and a cluster, or two clusters): the
    sender's cluster would depend on which one matched. Subjects are named by their place only."""
    problems = []
    subjects: dict[str, tuple[str, str]] = {}  # subject -> (owner, place)
    files: dict[Path, tuple[str, str]] = {}
    for where, owner in owners.items():
        for index, subject in enumerate(owner.client_subjects):
            place = f"{where}.client_subjects[{index}]"
            first, at = subjects.setdefault(subject, (where, place))
            if first != where:
                problems.append(f"{place}: also bound by {at}")
        for index, path in enumerate(owner.bearer_token_files):
            place = f"{where}.bearer_token_files[{index}]"
            first, at = files.setdefault(Path(os.path.normpath(path)), (where, place))
            if first != where:
                problems.append(f"{place}: {path} is also bound by {at}")
    return problems


def check_listen(config: Config) -> None:
    """Plain HTTP only on loopback, unless the config says ``insecure_http: true``; syslog
    (no authentication at all) only on loopback unless ``access.syslog.allow_remote``."""
    server = config.server
    if server.tls is None and not server.insecure_http and not is_loopback(server.host):
        raise ConfigError(
            f"refusing to serve plain HTTP on {server.host}: configure server.tls, "
            "or set server.insecure_http: true"
        )
    if unauthenticated_tls(config) and not server.auth.allow_unauthenticated:
        raise ConfigError(
            f"refusing to serve HTTPS without client authentication on {server.host}: configure "
            "server.tls.client_ca_file or server.auth.bearer_token_files, "
            "or set server.auth.allow_unauthenticated: true"
        )
    if config.access.enabled:
        from webhook.access.settings import check_syslog_listen

        check_syslog_listen(config.access)


def listen_warnings(config: Config) -> list[str]:
    """What ``serve`` warns about at start (allowed by an opt-in), for ``check-config`` to say too."""
    server = config.server
    warnings = []
    if server.tls is None and not is_loopback(server.host):
        warnings.append(f"plain HTTP on {server.host} (server.insecure_http): anyone on the network may post")
    if unauthenticated_tls(config):
        warnings.append(
            f"HTTPS without client authentication on {server.host} "
            "(server.auth.allow_unauthenticated): anyone who reaches it may post"
        )
    return warnings


def unauthenticated_tls(config: Config) -> bool:
    """HTTPS on a non-loopback address that anyone may post to (no client CA, no tokens)."""
    server = config.server
    return (
        server.tls is not None
        and server.tls.client_ca_file is None
        and not server.auth.has_tokens
        and not is_loopback(server.host)
    )


def _sink(raw: Mapping[str, Any]) -> SinkSettings:
    options = dict(raw)
    kind = options.pop("type")
    sink_type = sink_types()[kind]
    batch = {**sink_type.batch_defaults, **options.pop("batch", {})}
    return SinkSettings(
        type=kind,
        name=options.pop("name", kind),
        batch=BatchOptions(**batch),
        retry=RetryOptions(**options.pop("retry", {})),
        drop_when_full=options.pop("drop_when_full", False),
        record_types=frozenset(options.pop("record_types")) if "record_types" in options else None,
        options=sink_type.parse(options),
    )


def _filter(raw: Mapping[str, Any] | None) -> FilterSpec:
    if not raw:
        return DEFAULT_FILTER
    stages = raw.get("stages", "final")
    return FilterSpec(
        stages="final" if stages == "final" else frozenset(stages),
        include=tuple(_rule(r) for r in raw["include"]) if "include" in raw else DEFAULT_FILTER.include,
        exclude=tuple(_rule(r) for r in raw.get("exclude", ())),
    )


def _rule(raw: Mapping[str, Any]) -> Rule:
    def names(key: str) -> frozenset[str] | None:
        return frozenset(raw[key]) if key in raw else None

    def matcher(key: str) -> Matcher | None:
        return Matcher(tuple(raw[key])) if key in raw else None

    return Rule(
        api_groups=names("api_groups"),
        resources=names("resources"),
        subresources=names("subresources"),
        namespaces=matcher("namespaces"),
        names=matcher("names"),
        verbs=names("verbs"),
        users=matcher("users"),
        user_groups=matcher("user_groups"),
        stages=names("stages"),
        codes=frozenset(raw["codes"]) if "codes" in raw else None,
    )


def with_overrides(config: Config, **overrides: Any) -> Config:
    """Apply command-line flags: host, port, data_dir, log_format, log_level."""
    server, log = config.server, config.log
    if overrides.get("host") is not None:
        server = replace(server, host=overrides["host"])
    if overrides.get("port") is not None:
        server = replace(server, port=overrides["port"])
    if overrides.get("log_format") is not None:
        log = replace(log, format=overrides["log_format"])
    if overrides.get("log_level") is not None:
        log = replace(log, level=overrides["log_level"])
    data_dir = Path(overrides["data_dir"]) if overrides.get("data_dir") is not None else config.data_dir
    return replace(config, server=server, log=log, data_dir=data_dir)


def jsonl_sink_for(config: Config, record_type: str) -> Path | None:
    """The file of the first JSONL sink that takes ``record_type`` (``tail``, ``report``)."""
    for sink in config.sinks:
        if sink.type == "jsonl" and (sink.record_types is None or record_type in sink.record_types):
            return config.in_data_dir(sink.options.path)
    return None


def shared_audit_files(config: Config) -> list[str]:
    """JSONL sinks that take audit and access records both: access lines can rotate audit away."""

    def takes(sink: SinkSettings, kind: str) -> bool:
        return sink.record_types is None or kind in sink.record_types

    return [s.name for s in config.sinks if s.type == "jsonl" and takes(s, AUDIT) and takes(s, ACCESS)]


def known_clusters(config: Config) -> frozenset[str]:
    """The clusters a record may be about: the configured one and each one a credential is
    bound to. Metrics label by these alone (any other counts as ``other``), so their series
    stay bounded by the config."""
    sources = config.sources
    aks = (cluster_of(c) or c.lower() for c in (sources.aks.clusters or ())) if sources.aks else ()
    firehose = (c for key in sources.firehose.access_keys for c in key.clusters) if sources.firehose else ()
    pubsub = sources.pubsub.clusters if sources.pubsub else ()
    return frozenset({config.cluster, *config.server.auth.clusters, *aks, *firehose, *pubsub})


def describe(config: Config) -> dict[str, Any]:
    """A log-safe summary of the effective config (no credentials by construction)."""
    return {
        "cluster": config.cluster,
        "clusters": sorted(config.server.auth.clusters),
        "data_dir": str(config.data_dir),
        "host": config.server.host,
        "port": config.server.port,
        "sinks": [f"{s.type}:{s.name}" for s in config.sinks],
        "include_rules": len(config.filter.include),
        "exclude_rules": len(config.filter.exclude),
        "state": config.state.type,
        "access": config.access.enabled,
        "sources": list(config.sources.enabled),
    }
