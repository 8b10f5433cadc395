"""What the apiserver needs, rendered from our own config so the two cannot drift apart.

``audit_policy`` turns the filter rules into an ``audit.k8s.io/v1`` Policy; ``webhook_kubeconfig``
the kubeconfig for ``--audit-webhook-config-file``; ``apiserver_flags`` the flags, with a kubeadm
static-pod snippet that mounts the files.
"""

from __future__ import annotations

import argparse
import base64
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from cryptography import x509

from webhook.commands import _args
from webhook.config import Config, load_config
from webhook.core.net import is_loopback
from webhook.errors import ConfigError
from webhook.filter import Rule

__all__ = [
    "Profile",
    "WebhookClient",
    "add_arguments",
    "apiserver_flags",
    "audit_policy",
    "run",
    "webhook_kubeconfig",
]

Profile = Literal["metadata", "request-response"]

HOST_DIR: Final = "/etc/kubernetes/ingress-audit"

# Read-only and bookkeeping traffic of the control plane's own components: high volume, and
# nothing an ingress audit needs. Listed before every other rule.
_NOISE: Final[tuple[dict[str, Any], ...]] = (
    {
        "level": "None",
        "users": ["system:kube-proxy"],
        "verbs": ["watch"],
        "resources": [
            {"group": "", "resources": ["endpoints", "services", "services/status"]},
            {"group": "discovery.k8s.io", "resources": ["endpointslices"]},
        ],
    },
    {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get", "list", "watch"]},
    {
        "level": "None",
        "users": ["system:kube-controller-manager", "system:kube-scheduler", "system:apiserver"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "level": "None",
        "userGroups": ["system:nodes", "system:serviceaccounts:kube-system"],
        "verbs": ["get", "list", "watch", "update", "patch"],
        "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}],
    },
    {
        "level": "None",
        "resources": [
            {"group": "", "resources": ["events"]},
            {"group": "events.k8s.io", "resources": ["events"]},
        ],
    },
    {
        "level": "None",
        "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version", "/metrics"],
    },
)

_GLOB = frozenset("*?[")


def _exact(values: Any) -> list[str] | None:
    """Policy fields take exact names only; a pattern widens the rule to all names."""
    if values is None:
        return None
    patterns: tuple[str, ...] = values.patterns
    if any(_GLOB & set(p) for p in patterns):
        return None
    return sorted(patterns)


def _policy_rule(rule: Rule, profile: Profile) -> dict[str, Any] | None:
    if rule.resources is None:
        return None  # code-only rules (401/403) are covered by the Metadata catch-all
    groups = sorted(rule.api_groups) if rule.api_groups is not None else ["*"]
    # A policy's "ingresses" does not cover "ingresses/status"; a rule without subresources does.
    resources = sorted(rule.resources) + sorted(f"{r}/*" for r in rule.resources)
    if rule.subresources is not None:
        resources = sorted(f"{r}/{s}" if s else r for r in rule.resources for s in rule.subresources)
    only_secrets = groups == [""] and set(rule.resources) <= {"secrets"}
    level = "Metadata" if only_secrets and profile == "metadata" else "RequestResponse"
    kinds: list[dict[str, Any]] = []
    for group in groups:
        kind: dict[str, Any] = {"group": group, "resources": resources}
        names = _exact(rule.names)
        if names is not None:
            kind["resourceNames"] = names
        kinds.append(kind)
    out: dict[str, Any] = {"level": level}
    namespaces = _exact(rule.namespaces)
    if namespaces is not None:
        out["namespaces"] = namespaces
    if rule.verbs is not None:
        out["verbs"] = sorted(rule.verbs)
    users = _exact(rule.users)
    if users is not None:
        out["users"] = users
    out["resources"] = kinds
    return out


def audit_policy(config: Config, profile: Profile = "metadata") -> str:
    """The recommended Policy for what the filter keeps, as YAML with an explaining header."""
    rules: list[dict[str, Any]] = list(_NOISE)
    for rule in config.filter.include:
        policy_rule = _policy_rule(rule, profile)
        if policy_rule is not None:
            rules.append(policy_rule)
    rules.append({"level": "Metadata"})
    policy: dict[str, Any] = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy"}
    stages = config.filter.stages
    if stages == "final" or "RequestReceived" not in stages:
        policy["omitStages"] = ["RequestReceived"]
    policy["rules"] = rules
    secrets = (
        "Secrets are logged at Metadata level: no secret value is ever sent to the webhook;\n"
        "# records say who touched which Secret, not which keys or certificates it holds."
        if profile == "metadata"
        else "Secrets are logged at RequestResponse level: their values reach ingress-audit,\n"
        "# which replaces them with keyed fingerprints before anything else sees them, and\n"
        "# records carry key fingerprints and certificate details."
    )
    header = (
        f"# kube-apiserver audit policy for ingress-audit (profile: {profile}).\n"
        "# Rendered by `ingress-audit render audit-policy` from the filter rules; rules are\n"
        "# evaluated in order and the first match wins. The control plane's own read-only\n"
        "# traffic is dropped, the resources the filter keeps are logged with their bodies, and\n"
        "# everything else at Metadata so that 401s and 403s on any resource arrive.\n"
        f"# {secrets}\n"
    )
    return header + yaml.safe_dump(policy, sort_keys=False, default_flow_style=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookClient:
    """How the apiserver reaches and authenticates to us; paths are on the apiserver's host."""

    server: str | None = None
    ca_file: Path | None = None
    client_cert: str | None = None
    client_key: str | None = None
    token_file: Path | None = None
    inline_token: bool = False  # the token itself in the output, instead of tokenFile: <path>


def read_ca_file(path: Path) -> bytes:
    """The PEM certificates in ``path``; ConfigError if it holds a key or anything but certificates.

    The file goes into the kubeconfig as ``certificate-authority-data``: a private key passed by
    mistake would be copied to every apiserver host (and whoever reads the kubeconfig)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read --ca-file {path}: {exc.strerror}") from None
    if b"PRIVATE KEY-----" in data:
        raise ConfigError(
            f"--ca-file {path} holds a private key; pass the CA's certificate (e.g. ca.crt), never a key"
        )
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        certificates = []
    if not certificates or data.count(b"-----BEGIN ") != len(certificates):
        raise ConfigError(f"--ca-file {path} is not PEM certificates (-----BEGIN CERTIFICATE-----)")
    return data


def _server_url(config: Config) -> str:
    host = config.server.host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - describing, not binding
        raise ConfigError(
            "the server listens on all addresses: pass --server with the URL the apiserver uses"
        )
    scheme = "https" if config.server.tls else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{config.server.port}/audit"


def webhook_kubeconfig(config: Config, client: WebhookClient) -> str:
    server = client.server or _server_url(config)
    tls = server.startswith("https://")
    cluster: dict[str, Any] = {"server": server}
    if tls:
        ca = client.ca_file
        if ca is None and config.server.tls is not None and not is_loopback(config.server.host):
            raise ConfigError("pass --ca-file: the CA that signed the serving certificate")
        if ca is not None:
            cluster["certificate-authority-data"] = base64.b64encode(read_ca_file(ca)).decode()
    user: dict[str, Any] = {}
    if client.client_cert or client.client_key:
        if not (client.client_cert and client.client_key):
            raise ConfigError("--client-cert and --client-key go together")
        user["client-certificate"] = client.client_cert
        user["client-key"] = client.client_key
    token_file = client.token_file or next(iter(config.server.auth.bearer_token_files), None)
    if token_file is not None:
        if not tls:
            raise ConfigError("a bearer token is only sent over https")
        if client.inline_token:
            token = next((ln.strip() for ln in token_file.read_text().splitlines() if ln.strip()), "")
            if not token:
                raise ConfigError(f"no token in {token_file}")
            user["token"] = token
        else:
            # client-go reads it (and re-reads it periodically: a rotation needs no restart).
            user["tokenFile"] = str(token_file)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "ingress-audit", "cluster": cluster}],
        "users": [{"name": "kube-apiserver", "user": user}],
        "contexts": [
            {
                "name": "ingress-audit",
                "context": {"cluster": "ingress-audit", "user": "kube-apiserver"},
            }
        ],
        "current-context": "ingress-audit",
    }
    header = (
        "# kube-apiserver --audit-webhook-config-file for ingress-audit.\n"
        "# Rendered by `ingress-audit render webhook-kubeconfig`. Keep it readable by root only.\n"
    )
    if "tokenFile" in user:
        header += "# tokenFile: put the bearer token there on the apiserver host, readable by root only.\n"
    return header + yaml.safe_dump(kubeconfig, sort_keys=False)


_BATCH_EVENTS: Final = 400  # the apiserver's default batch size
_TRUNCATE_BATCH_BYTES: Final = 10 * 1024 * 1024  # the apiserver's default and ceiling
_TRUNCATE_EVENT_BYTES: Final = 1024 * 1024


def apiserver_flags(mode: Literal["batch", "blocking"] = "batch", config: Config | None = None) -> str:
    """kube-apiserver's audit flags and a kubeadm snippet. The batch and truncation sizes stay
    within ``config``'s request limits, so that the apiserver never sends a batch or an event
    that the server must refuse (a refused batch is retried, then dropped)."""
    server = (config or Config()).server
    events = min(_BATCH_EVENTS, server.max_events_per_request)
    batch_bytes = min(_TRUNCATE_BATCH_BYTES, server.max_body_bytes)
    event_bytes = min(_TRUNCATE_EVENT_BYTES, server.max_event_bytes, batch_bytes)
    flags = [
        f"--audit-policy-file={HOST_DIR}/audit-policy.yaml",
        f"--audit-webhook-config-file={HOST_DIR}/webhook-kubeconfig.yaml",
        f"--audit-webhook-mode={mode}",
    ]
    if mode == "batch":
        flags += [
            f"--audit-webhook-batch-max-size={events}",
            "--audit-webhook-batch-max-wait=5s",
            "--audit-webhook-batch-throttle-qps=10",
            "--audit-webhook-batch-throttle-burst=15",
        ]
    flags += [
        "--audit-webhook-truncate-enabled=true",
        f"--audit-webhook-truncate-max-batch-size={batch_bytes}",
        f"--audit-webhook-truncate-max-event-size={event_bytes}",
        "--audit-webhook-initial-backoff=10s",
    ]
    snippet = {
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "command": ["kube-apiserver", "...", *flags],
                    "volumeMounts": [{"name": "ingress-audit", "mountPath": HOST_DIR, "readOnly": True}],
                }
            ],
            "volumes": [
                {
                    "name": "ingress-audit",
                    "hostPath": {"path": HOST_DIR, "type": "DirectoryOrCreate"},
                }
            ],
        }
    }
    notes = (
        f"# kube-apiserver flags for ingress-audit (mode: {mode}).\n"
        "# batch: up to 400 events per request, sent at least every 5 s; API calls never wait.\n"
        "# blocking: one request per event inside each API call; our latency is the API's.\n"
        "# Truncation keeps a batch under 10 MiB and drops the bodies of events over 1 MiB.\n"
    )
    kubeadm = (
        "\n# kubeadm: merge into /etc/kubernetes/manifests/kube-apiserver.yaml\n"
        "# (copy audit-policy.yaml and webhook-kubeconfig.yaml into " + HOST_DIR + " first)\n"
    )
    return notes + "\n".join(flags) + "\n" + kubeadm + yaml.safe_dump(snippet, sort_keys=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    policy = targets.add_parser("audit-policy", help="the audit policy for the configured rules")
    _args.add_config(policy, help=None)
    policy.add_argument("--profile", choices=["metadata", "request-response"], default="metadata")
    kubeconfig = targets.add_parser(
        "webhook-kubeconfig", help="the kubeconfig for --audit-webhook-config-file"
    )
    _args.add_config(kubeconfig, help=None)
    kubeconfig.add_argument("--server", help="URL the apiserver posts to (default: from config)")
    kubeconfig.add_argument("--ca-file", type=Path, help="CA that signed the serving certificate")
    kubeconfig.add_argument("--client-cert", help="client certificate path on the apiserver host")
    kubeconfig.add_argument("--client-key", help="client key path on the apiserver host")
    kubeconfig.add_argument(
        "--token-file",
        type=Path,
        help="bearer token file, written as tokenFile: its path on the apiserver host (default: from config)",
    )
    kubeconfig.add_argument(
        "--inline-token",
        action="store_true",
        help="write the token itself instead of tokenFile (the output is then a secret)",
    )
    flags = targets.add_parser("apiserver-flags", help="kube-apiserver flags and a kubeadm snippet")
    flags.add_argument("--mode", choices=["batch", "blocking"], default="batch")
    _args.add_config(
        flags, help="[INGRESS_AUDIT_CONFIG] keep batch and event sizes within its request limits"
    )


def run(args: argparse.Namespace) -> int:
    if args.target == "webhook-kubeconfig" and args.ca_file is not None:
        try:
            read_ca_file(args.ca_file)
        except ConfigError as exc:  # a wrong argument: a usage error
            print(f"ingress-audit render: error: {exc.message}", file=sys.stderr)
            return 2
    config = load_config(args.config)
    if args.target == "audit-policy":
        sys.stdout.write(audit_policy(config, args.profile))
    elif args.target == "webhook-kubeconfig":
        client = WebhookClient(
            server=args.server,
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
            token_file=args.token_file,
            inline_token=args.inline_token,
        )
        sys.stdout.write(webhook_kubeconfig(config, client))
    else:
        sys.stdout.write(apiserver_flags(args.mode, config))
    return 0
