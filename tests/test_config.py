from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.conftest import make_event
from webhook.access.settings import AccessConfig, AccessRateLimitConfig
from webhook.cli import main
from webhook.config import (
    Config,
    default_sinks,
    describe,
    jsonl_sink_for,
    known_clusters,
    load_config,
    parse_config,
    shared_audit_files,
    validate_config,
    with_overrides,
)
from webhook.errors import ConfigError
from webhook.filter import DEFAULT_FILTER, compile_filter
from webhook.record.audit import record_schema

MARKER = "S3CR3T marker/value"  # fails every pattern in the schema


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), "utf-8")
    return path


def test_defaults_are_the_documented_ones() -> None:
    """No config: loopback:9440, ./ingress-audit-data, records.jsonl, dead-letter.jsonl, 64 MiB."""
    config = load_config(None)

    assert config == Config()
    assert (config.server.host, config.server.port) == ("127.0.0.1", 9440)
    assert config.server.max_body_bytes == 64 * 1024 * 1024
    assert config.data_dir == Path("ingress-audit-data")
    assert [config.in_data_dir(s.options.path) for s in config.sinks] == [
        Path("ingress-audit-data/records.jsonl")
    ]
    assert config.in_data_dir(config.dead_letter.path) == Path("ingress-audit-data/dead-letter.jsonl")
    assert config.filter == DEFAULT_FILTER
    assert config.filter.stages == "final"
    assert config.server.event_loop == "uvloop"
    (jsonl,) = config.sinks  # written at once after a quiet spell, at most 10 times a second
    assert (jsonl.batch.timeout_s, jsonl.batch.min_interval_s) == (0.0, 0.1)


def test_a_sinks_min_interval_can_be_set_or_turned_off(tmp_path: Path) -> None:
    doc = (
        "sinks:\n  - type: jsonl\n    batch: {min_interval_s: 0}\n"
        "  - type: stdout\n    batch: {min_interval_s: 2.5}\n"
    )
    config = load_config(write(tmp_path, doc))
    assert [s.batch.min_interval_s for s in config.sinks] == [0.0, 2.5]


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    """An empty YAML document changes nothing."""
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "{}\n")) == Config()


def test_yaml_file_sets_every_section(tmp_path: Path) -> None:
    """Values from the file land in the frozen config objects, with the right types."""
    path = write(
        tmp_path,
        {
            "cluster": "prod-eu",
            "data_dir": "/var/lib/ingress-audit",
            "server": {"host": "127.0.0.2", "port": 9555, "max_body_bytes": 2048, "shutdown_timeout_s": 5},
            "log": {"level": "debug", "format": "console"},
            "dedupe": {"max_entries": 10, "ttl_s": 1.5},
            "sinks": [
                {
                    "type": "jsonl",
                    "name": "main",
                    "path": "out/r.jsonl",
                    "max_bytes": 4096,
                    "backups": 2,
                    "fsync": False,
                }
            ],
            "dead_letter": {"path": "/srv/dl.jsonl", "backups": 0},
        },
    )

    config = load_config(path)

    assert config.cluster == "prod-eu"
    assert config.data_dir == Path("/var/lib/ingress-audit")
    assert (config.server.host, config.server.port, config.server.max_body_bytes) == ("127.0.0.2", 9555, 2048)
    assert config.server.shutdown_timeout_s == 5
    assert (config.log.level, config.log.format) == ("debug", "console")
    assert (config.dedupe.max_entries, config.dedupe.ttl_s) == (10, 1.5)
    (sink,) = config.sinks
    options = sink.options
    assert (sink.name, options.max_bytes, options.backups, options.fsync) == ("main", 4096, 2, False)
    assert config.in_data_dir(options.path) == Path("/var/lib/ingress-audit/out/r.jsonl")
    assert config.in_data_dir(config.dead_letter.path) == Path("/srv/dl.jsonl")
    assert config.dead_letter.backups == 0


def test_filter_rules_from_yaml_behave(tmp_path: Path) -> None:
    """Rules in the file compile to the predicate they describe."""
    path = write(
        tmp_path,
        """
filter:
  stages: [ResponseComplete]
  include:
    - api_groups: [""]
      resources: [secrets]
      namespaces: ["team-*"]
    - codes: [403]
  exclude:
    - users: ["system:serviceaccount:*"]
""",
    )

    keep = compile_filter(load_config(path).filter)

    secret: dict[str, Any] = {"api_group": "", "resource": "secrets"}
    assert keep(make_event(namespace="team-a", **secret))
    assert not keep(make_event(namespace="shop", **secret))
    assert not keep(make_event(namespace="team-a", username="system:serviceaccount:ci:x", **secret))
    assert keep(make_event(api_group="", resource="pods", code=403))
    assert not keep(make_event(namespace="team-a", stage="Panic", **secret))


def test_exclude_alone_keeps_the_default_includes(tmp_path: Path) -> None:
    """Setting only ``exclude`` adds to the defaults instead of replacing them."""
    config = load_config(write(tmp_path, {"filter": {"exclude": [{"users": ["system:apiserver"]}]}}))
    keep = compile_filter(config.filter)

    assert config.filter.include == DEFAULT_FILTER.include
    assert keep(make_event())
    assert not keep(make_event(username="system:apiserver"))


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        ({"server": {"prot": 9440}}, "$.server", "'prot'"),
        ({"clutser": "x"}, "$", "'clutser'"),
        ({"filter": {"include": [{"resource": ["ingresses"]}]}}, "$.filter.include[0]", "'resource'"),
        ({"server": {"port": 70000}}, "$.server.port", "maximum"),
        ({"log": {"level": "loud"}}, "$.log.level", "'debug'"),
        ({"filter": {"include": [{"codes": [999]}]}}, "$.filter.include[0].codes[0]", "maximum"),
        ({"sinks": []}, "$.sinks", "minItems"),
        ({"dedupe": {"ttl_s": 0}}, "$.dedupe.ttl_s", "exclusiveMinimum"),
    ],
)
def test_invalid_config_names_the_path(tmp_path: Path, doc: Any, path: str, words: str) -> None:
    """Each schema error is reported as ``<json path>: <problem>``."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, doc))

    assert any(line.startswith(f"{path}: ") and words in line for line in info.value.errors), (
        info.value.errors
    )
    assert "config.yaml" in info.value.message


def test_every_error_is_reported(tmp_path: Path) -> None:
    """All problems at once, not just the first."""
    errors = validate_config({"cluster": 1, "server": {"port": "x", "host": ""}, "typo": True})
    assert {e.split(":")[0] for e in errors} == {"$", "$.cluster", "$.server.port", "$.server.host"}


@pytest.mark.parametrize(
    "doc",
    [
        {"cluster": 12345, "server": {"host": MARKER}},  # host is fine; cluster is wrong
        {"server": {"port": MARKER}},
        {"server": {"host": ["x", MARKER]}},
        {"log": {"level": MARKER}},
        {"filter": {"stages": MARKER}},
        {"filter": {"include": [{"codes": [MARKER]}]}},
        {"sinks": [{"type": "jsonl", "name": MARKER}]},
        {"sinks": [{"type": MARKER}]},
        {"dead_letter": {"backups": MARKER}},
        {"data_dir": {"nested": MARKER}},
        MARKER,
    ],
)
def test_errors_never_echo_the_value(tmp_path: Path, doc: Any) -> None:
    """A mistyped token or key must not end up in a terminal or a log via the error."""
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, doc))

    assert info.value.errors
    assert MARKER not in str(info.value)
    assert not [line for line in info.value.errors if MARKER in line]


def test_yaml_syntax_error_gives_the_position_not_the_text(tmp_path: Path) -> None:
    """Broken YAML is a ConfigError with line and column, without quoting the line."""
    path = write(tmp_path, f'cluster: ok\nserver:\n  host: "{MARKER}\n  port: [\n')

    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+") as info:
        load_config(path)

    assert MARKER not in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist fails cleanly, naming the file."""
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_parse_config_rejects_a_non_mapping() -> None:
    """A YAML list or scalar at the top is a schema error, not a crash."""
    with pytest.raises(ConfigError):
        parse_config(["cluster", "x"])


def test_flags_override_the_file(tmp_path: Path) -> None:
    """Command-line values replace the file's; flags left unset (None) change nothing."""
    config = load_config(
        write(tmp_path, {"server": {"host": "127.0.0.2", "port": 1234}, "data_dir": "/a", "cluster": "c"})
    )

    same = with_overrides(config, host=None, port=None, data_dir=None, log_format=None, log_level=None)
    changed = with_overrides(
        config, host="::1", port=0, data_dir=tmp_path / "d", log_format="console", log_level="error"
    )

    assert same == config
    assert (changed.server.host, changed.server.port, changed.data_dir) == ("::1", 0, tmp_path / "d")
    assert (changed.log.format, changed.log.level) == ("console", "error")
    assert changed.cluster == "c"
    assert changed.server.max_body_bytes == config.server.max_body_bytes


def test_relative_paths_are_under_the_data_dir() -> None:
    """Relative sink and dead-letter paths resolve inside the data dir; absolute ones stay."""
    config = Config(data_dir=Path("/data"))
    assert config.in_data_dir(Path("r.jsonl")) == Path("/data/r.jsonl")
    assert config.in_data_dir(Path("/elsewhere/r.jsonl")) == Path("/elsewhere/r.jsonl")


def test_describe_is_log_safe() -> None:
    """The start-up summary holds plain scalars and names, nothing nested from the file."""
    summary = describe(Config())
    assert summary["host"] == "127.0.0.1"
    assert summary["port"] == 9440
    assert summary["sinks"] == ["jsonl:jsonl"]
    assert summary["include_rules"] == len(DEFAULT_FILTER.include)


def test_detections_merge_onto_each_rules_defaults() -> None:
    """A rule's options replace its defaults one by one; the other rules keep theirs."""
    config = parse_config(
        {
            "detections": {
                "max_keys": 500,
                "deployment_identities": {"service_accounts": ["argocd/argocd-*"]},
                "change_windows": [
                    {"days": ["mon"], "start": "22:00", "end": "02:00", "timezone": "Europe/Berlin"}
                ],
                "rules": {
                    "brute-force-user": {"threshold": 3, "exceptions": {"source_cidrs": ["10.0.0.0/8"]}}
                },
            }
        }
    )

    rules = config.detections.rules
    assert (rules["brute-force-user"].threshold, rules["brute-force-user"].window_s) == (3, 60.0)
    assert rules["brute-force-user"].exceptions.source_cidrs == ("10.0.0.0/8",)
    assert rules["brute-force-source-ip"] == Config().detections.rules["brute-force-source-ip"]
    assert config.detections.max_keys == 500
    assert config.detections.deployment_identities.service_accounts == ("argocd/argocd-*",)
    (window,) = config.detections.change_windows
    assert (window.start.hour, window.end.hour, window.timezone) == (22, 2, "Europe/Berlin")


@pytest.mark.parametrize(
    ("detections", "path"),
    [
        ({"rules": {"brute-force": {"threshold": 3}}}, "$.detections.rules"),
        (
            {"rules": {"brute-force-user": {"namespace_threshold": 3}}},
            "$.detections.rules['brute-force-user']",
        ),
        (
            {"rules": {"brute-force-user": {"threshold": 0}}},
            "$.detections.rules['brute-force-user'].threshold",
        ),
        ({"change_windows": [{"days": ["monday"]}]}, "$.detections.change_windows[0].days[0]"),
        ({"change_windows": [{"start": "25:00"}]}, "$.detections.change_windows[0].start"),
        ({"change_windows": [{"timezone": "Mars/Olympus"}]}, "$.detections.change_windows[0].timezone"),
        ({"exceptions": {"source_cidrs": ["10.0.0.0/33"]}}, "$.detections.exceptions.source_cidrs[0]"),
        ({"deployment_identities": {"service_accounts": ["argocd"]}}, "$.detections.deployment_identities"),
        ({"findings_min_severity": "urgent"}, "$.detections.findings_min_severity"),
    ],
)
def test_bad_detections_name_the_path(detections: dict[str, Any], path: str) -> None:
    """Each mistake in the detections section is an error naming where it is."""
    with pytest.raises(ConfigError) as info:
        parse_config({"detections": detections})

    assert any(line.startswith(path) for line in info.value.errors), info.value.errors


def test_record_types_select_what_a_sink_gets() -> None:
    """record_types is a set of type names; absent, a sink takes every type."""
    config = parse_config({"sinks": [{"type": "jsonl"}, {"type": "stdout", "record_types": ["alert"]}]})

    assert [s.record_types for s in config.sinks] == [None, frozenset({"alert"})]
    with pytest.raises(ConfigError):
        parse_config({"sinks": [{"type": "stdout", "record_types": []}]})


def test_access_logs_get_their_own_jsonl_file_by_default() -> None:
    """No sinks configured: records.jsonl takes every type, or with access logs on, the audit
    records and alerts, and access.jsonl the access records and summaries, each rotated alone."""
    plain = parse_config({})
    access = parse_config({"access": {"enabled": True}})

    assert [(s.name, s.options.path, s.record_types) for s in plain.sinks] == [
        ("jsonl", Path("records.jsonl"), None)
    ]
    assert [(s.name, s.options.path, s.record_types) for s in access.sinks] == [
        ("jsonl", Path("records.jsonl"), frozenset({"audit", "alert"})),
        ("access-jsonl", Path("access.jsonl"), frozenset({"access", "access_summary"})),
    ]
    assert {s.options.max_bytes for s in access.sinks} == {plain.sinks[0].options.max_bytes}
    assert shared_audit_files(access) == []
    # derived again when only the access section changes, as tests and replay do
    assert replace(plain, access=access.access).sinks == access.sinks
    assert replace(access, access=plain.access) == plain


def test_default_sinks_take_every_record_type() -> None:
    """Between them the two default files take every type record.schema.json knows."""
    schema = record_schema()
    types: set[str] = set()
    for sink in default_sinks(True):
        assert sink.record_types is not None
        assert not types & sink.record_types
        types |= sink.record_types
    assert types == set(schema["properties"]["type"]["enum"])


def test_configured_sinks_are_kept_as_given() -> None:
    """A sinks list is never rewritten: one JSONL sink keeps everything, and is named as shared."""
    config = parse_config({"access": {"enabled": True}, "sinks": [{"type": "jsonl"}, {"type": "stdout"}]})

    assert [(s.type, s.record_types) for s in config.sinks] == [("jsonl", None), ("stdout", None)]
    assert shared_audit_files(config) == ["jsonl"]
    assert replace(config, access=AccessConfig()).sinks == config.sinks
    split = parse_config(
        {
            "access": {"enabled": True},
            "sinks": [
                {"type": "jsonl", "record_types": ["audit", "alert"]},
                {"type": "jsonl", "name": "edge", "path": "edge.jsonl", "record_types": ["access"]},
            ],
        }
    )
    assert shared_audit_files(split) == []
    assert jsonl_sink_for(split, "access") == split.data_dir / "edge.jsonl"
    assert jsonl_sink_for(split, "audit") == split.data_dir / "records.jsonl"


def test_syslog_rate_limit_options() -> None:
    """access.syslog.rate_limit: defaults, overrides, and the schema's bounds."""
    assert parse_config({}).access.syslog.rate_limit == AccessRateLimitConfig()
    raw = {"access": {"syslog": {"rate_limit": {"lines_per_s": 0, "burst": 5, "max_peers": 2}}}}
    assert parse_config(raw).access.syslog.rate_limit == AccessRateLimitConfig(
        lines_per_s=0, burst=5, max_peers=2
    )
    with pytest.raises(ConfigError):
        parse_config({"access": {"syslog": {"rate_limit": {"burst": 0}}}})
    with pytest.raises(ConfigError):
        parse_config({"access": {"syslog": {"rate_limit": {"per_peer": 1}}}})


@pytest.fixture(scope="module")
def review_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A serving pair, a client CA and bearer token files, as the security review made them."""
    pki = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(pki / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(pki / "tls.key"))
    ca.cert_pem.write_to_path(str(pki / "client-ca.crt"))
    (pki / "token").write_text("VzCgeY0a7sQmP3fLr9Tn2xKbW5hJd8Uo\n")
    (pki / "token").chmod(0o600)
    (pki / "weak-token").write_text("a" * 16 + "\n")
    (pki / "weak-token").chmod(0o644)
    return pki


_TLS = {"cert_file": "tls.crt", "key_file": "tls.key"}
_REVIEW_CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    # The security review's section 7 (c1-c16): each config and whether check-config takes it.
    "c1 plain HTTP on 0.0.0.0": ({"server": {"host": "0.0.0.0"}}, False),
    "c2 plain HTTP on 0.0.0.0, opted in": ({"server": {"host": "0.0.0.0", "insecure_http": True}}, True),
    "c3 HTTPS on 0.0.0.0 without client auth": ({"server": {"host": "0.0.0.0", "tls": _TLS}}, False),
    "c3b the same, opted in": (
        {"server": {"host": "0.0.0.0", "tls": _TLS, "auth": {"allow_unauthenticated": True}}},
        True,
    ),
    "c4 tokens without TLS": ({"server": {"auth": {"bearer_token_files": ["token"]}}}, False),
    "c5 subjects without a client CA": (
        {"server": {"host": "0.0.0.0", "tls": _TLS, "auth": {"client_subjects": ["kube-apiserver-audit"]}}},
        False,
    ),
    "c6 syslog on 0.0.0.0": ({"access": {"enabled": True, "syslog": {"udp": "0.0.0.0:5514"}}}, False),
    "c7 syslog on 0.0.0.0, allowed": (
        {"access": {"enabled": True, "syslog": {"udp": "0.0.0.0:5514", "allow_remote": True}}},
        True,
    ),
    "c8 syslog on ::": ({"access": {"enabled": True, "syslog": {"udp": "[::]:5514"}}}, False),
    "c9 syslog on ''": ({"access": {"enabled": True, "syslog": {"udp": ""}}}, False),
    "c10 syslog on a mapped address": (
        {"access": {"enabled": True, "syslog": {"udp": "[::ffff:127.0.0.1]:5514"}}},
        False,
    ),
    "c11 syslog on a host name": (
        {"access": {"enabled": True, "syslog": {"udp": "example.com:5514"}}},
        False,
    ),
    "c12 a world-readable weak token file": (
        {
            "server": {
                "host": "0.0.0.0",
                "tls": {**_TLS, "client_ca_file": "client-ca.crt"},
                "auth": {"bearer_token_files": ["weak-token"]},
            }
        },
        False,
    ),
    "c13 require all with tokens only": (
        {
            "server": {
                "host": "0.0.0.0",
                "tls": _TLS,
                "auth": {"bearer_token_files": ["token"], "require": "all"},
            }
        },
        True,
    ),
    "c15 syslog on localhost": ({"access": {"enabled": True, "syslog": {"udp": "localhost:5514"}}}, True),
    "m1 tokens bound to a cluster authenticate HTTPS on 0.0.0.0": (
        {
            "server": {
                "host": "0.0.0.0",
                "tls": _TLS,
                "auth": {"clusters": {"prod-eu": {"bearer_token_files": ["token"]}}},
            }
        },
        True,
    ),
    "m2 a cluster's tokens without TLS": (
        {"server": {"auth": {"clusters": {"prod-eu": {"bearer_token_files": ["token"]}}}}},
        False,
    ),
    "m3 a cluster's subjects without a client CA": (
        {
            "server": {
                "host": "0.0.0.0",
                "tls": _TLS,
                "auth": {"clusters": {"prod-eu": {"client_subjects": ["a"]}}},
            }
        },
        False,
    ),
    "m4 a cluster's weak token file": (
        {
            "server": {
                "host": "0.0.0.0",
                "tls": _TLS,
                "auth": {"clusters": {"prod-eu": {"bearer_token_files": ["weak-token"]}}},
            }
        },
        False,
    ),
}


@pytest.mark.parametrize("case", list(_REVIEW_CONFIGS))
def test_the_reviews_config_matrix(review_pki: Path, tmp_path: Path, case: str, capsys: Any) -> None:
    """``check-config`` refuses what cannot be served safely, with one line, and takes the rest."""
    doc, ok = _REVIEW_CONFIGS[case]
    text = yaml.safe_dump(doc)
    for name in ("tls.crt", "tls.key", "client-ca.crt", "weak-token", "token"):
        text = text.replace(f" {name}\n", f" {review_pki / name}\n")
    path = tmp_path / "config.yaml"
    path.write_text(text)

    code = main(["check-config", str(path)])

    out, err = capsys.readouterr()
    assert (code == 0) == ok, out + err
    assert "Traceback" not in err


def test_clusters_bind_credentials() -> None:
    """``server.auth.clusters``: each name's subjects and token files, kept apart from the global ones."""
    config = parse_config(
        {
            "cluster": "hub",
            "server": {
                "tls": {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"},
                "auth": {
                    "client_subjects": ["hub-apiserver"],
                    "clusters": {
                        "prod-eu": {"client_subjects": ["apiserver-eu"], "bearer_token_files": ["eu.token"]},
                        "prod-us": {"bearer_token_files": ["us.token"]},
                    },
                },
            },
        }
    )

    clusters = config.server.auth.clusters
    assert list(clusters) == ["prod-eu", "prod-us"]
    assert clusters["prod-eu"].client_subjects == ("apiserver-eu",)
    assert clusters["prod-eu"].bearer_token_files == (Path("eu.token"),)
    assert clusters["prod-us"].client_subjects == ()
    assert config.server.auth.client_subjects == ("hub-apiserver",)
    assert config.server.auth.has_tokens
    assert known_clusters(config) == {"hub", "prod-eu", "prod-us"}
    assert describe(config)["clusters"] == ["prod-eu", "prod-us"]
    assert describe(Config())["clusters"] == []


def test_the_clusters_a_source_may_speak_for_are_known_clusters() -> None:
    """The AKS source's clusters (names or resource ids, in any case) label metrics as themselves."""
    resource_id = (
        "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/PROD-AKS"
    )
    config = parse_config(
        {
            "cluster": "hub",
            "sources": {
                "aks": {
                    "account_url": "https://acct.blob.core.windows.net",
                    "sas_token_file": "sas",
                    "clusters": ["aks-eu", resource_id],
                }
            },
        }
    )
    assert known_clusters(config) == {"hub", "aks-eu", "prod-aks"}


@pytest.mark.parametrize(
    ("clusters", "error"),
    [
        ({"Prod_EU": {"client_subjects": ["a"]}}, "$.server.auth.clusters: fails 'pattern' (a name there"),
        ({"x" * 64: {"client_subjects": ["a"]}}, "$.server.auth.clusters: fails 'maxLength' (a name there"),
        ({"prod": {}}, "$.server.auth.clusters.prod: fails 'minProperties'"),
        ({"prod": {"client_subjects": []}}, "$.server.auth.clusters.prod.client_subjects: fails 'minItems'"),
        ({"prod": {"tokens": ["t"]}}, "$.server.auth.clusters.prod: fails 'additionalProperties'"),
    ],
)
def test_cluster_names_and_entries_are_checked(clusters: dict[str, Any], error: str) -> None:
    """Names are lowercase DNS labels; an entry binds at least one credential; typos fail."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"auth": {"clusters": clusters}}})
    assert [e for e in caught.value.errors if e.startswith(error)], caught.value.errors


def test_a_credential_bound_twice_is_an_error() -> None:
    """A subject or token file of two clusters, or of a cluster and the global lists, is refused:
    token files by their paths, subjects by their place only."""
    tls = {"cert_file": "c", "key_file": "k", "client_ca_file": "ca"}
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "server": {
                    "tls": tls,
                    "auth": {
                        "client_subjects": ["hub-apiserver"],
                        "bearer_token_files": ["/run/hub.token"],
                        "clusters": {
                            "prod-eu": {
                                "client_subjects": [MARKER],
                                "bearer_token_files": ["/run/eu.token", "/run/x/../hub.token"],
                            },
                            "prod-us": {"client_subjects": [MARKER], "bearer_token_files": ["/run/eu.token"]},
                        },
                    },
                }
            }
        )

    assert caught.value.errors == (
        "$.server.auth.clusters['prod-eu'].bearer_token_files[1]: /run/x/../hub.token is also bound by "
        "$.server.auth.bearer_token_files[0]",
        "$.server.auth.clusters['prod-us'].client_subjects[0]: also bound by "
        "$.server.auth.clusters['prod-eu'].client_subjects[0]",
        "$.server.auth.clusters['prod-us'].bearer_token_files[0]: /run/eu.token is also bound by "
        "$.server.auth.clusters['prod-eu'].bearer_token_files[0]",
    )


def test_check_config_names_the_bound_clusters(review_pki: Path, tmp_path: Path, capsys: Any) -> None:
    """check-config says which clusters credentials are bound to (names only); without any, the
    output is as it always was."""
    path = write(
        tmp_path,
        {
            "server": {
                "tls": {"cert_file": str(review_pki / "tls.crt"), "key_file": str(review_pki / "tls.key")},
                "auth": {"clusters": {"prod-us": {"bearer_token_files": [str(review_pki / "token")]}}},
            }
        },
    )

    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out == f"{path}: ok\n{path}: clusters bound to credentials: prod-us\n"
