"""What `render` prints is what kube-apiserver needs, and consistent with the config."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from tests.paths import ROOT
from webhook.cli import main
from webhook.commands.render import WebhookClient, apiserver_flags, audit_policy, webhook_kubeconfig
from webhook.config import AuthConfig, Config, ServerConfig, TlsConfig, load_config
from webhook.core.patterns import Matcher
from webhook.errors import ConfigError
from webhook.filter import FilterSpec, Rule

TOKEN = "render-token-0123456789abcdef"


def _tls_config(tmp_path: Path, host: str = "ingress-audit.example.internal") -> Config:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return Config(
        server=ServerConfig(
            host=host,
            port=8443,
            tls=TlsConfig(cert_file=tmp_path / "tls.crt", key_file=tmp_path / "tls.key"),
            auth=AuthConfig(bearer_token_files=(token,)),
        )
    )


def test_plain_kubeconfig_for_loopback() -> None:
    """On the defaults: plain http to 127.0.0.1:9440/audit, no credentials (none would be sent)."""
    doc = yaml.safe_load(webhook_kubeconfig(Config(), WebhookClient()))

    assert doc["clusters"][0]["cluster"] == {"server": "http://127.0.0.1:9440/audit"}
    assert doc["users"][0]["user"] == {}
    assert doc["current-context"] == "ingress-audit"


def test_tls_kubeconfig_embeds_ca_token_and_client_cert(tmp_path: Path) -> None:
    """With TLS: https URL, the CA as data, the configured token's file, and client cert paths."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    client = WebhookClient(ca_file=ca_file, client_cert="/etc/k/c.crt", client_key="/etc/k/c.key")

    doc = yaml.safe_load(webhook_kubeconfig(_tls_config(tmp_path), client))

    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://ingress-audit.example.internal:8443/audit"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.cert_pem.bytes()
    assert doc["users"][0]["user"] == {
        "client-certificate": "/etc/k/c.crt",
        "client-key": "/etc/k/c.key",
        "tokenFile": str(tmp_path / "token"),
    }


def test_the_token_is_printed_only_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A14 (14): by default the kubeconfig names the token file (client-go's ``tokenFile``);
    the token itself is written only with ``--inline-token``."""
    ca_file = tmp_path / "ca.crt"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "server:\n  host: ingress-audit.example.internal\n"
        f"  tls: {{cert_file: {tmp_path}/tls.crt, key_file: {tmp_path}/tls.key}}\n"
        f"  auth: {{bearer_token_files: [{tmp_path}/token]}}\n"
    )
    _tls_config(tmp_path)  # writes the token file
    args = ["render", "webhook-kubeconfig", "--config", str(config_file), "--ca-file", str(ca_file)]

    assert main(args) == 0
    default = capsys.readouterr().out
    assert TOKEN not in default
    assert yaml.safe_load(default)["users"][0]["user"] == {"tokenFile": str(tmp_path / "token")}

    assert main([*args, "--inline-token"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["users"][0]["user"] == {"token": TOKEN}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("key", "holds a private key"),
        ("key+cert", "holds a private key"),
        ("text", "is not PEM certificates"),
        ("broken", "is not PEM certificates"),
    ],
)
def test_a_ca_file_that_is_not_certificates_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    """A14 (14): ``--ca-file ca.key`` (a private key by mistake) or anything but PEM certificates
    is a usage error (exit 2) naming the problem; nothing is printed on stdout, no key bytes anywhere."""
    ca = trustme.CA()
    key = ca.private_key_pem.bytes()
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(
        {
            "key": key,
            "key+cert": ca.cert_pem.bytes() + key,
            "text": b"not a certificate\n",
            "broken": b"-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n",
        }[content]
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "server:\n  host: ingress-audit.example.internal\n  tls: {cert_file: /x.crt, key_file: /x.key}\n"
    )

    code = main(["render", "webhook-kubeconfig", "--config", str(config_file), "--ca-file", str(ca_file)])

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert message in captured.err
    assert key.decode().splitlines()[1] not in captured.err
    with pytest.raises(ConfigError, match=message):
        webhook_kubeconfig(load_config(config_file), WebhookClient(ca_file=ca_file))


@pytest.mark.parametrize(
    ("client", "config_host", "message"),
    [
        (WebhookClient(), "ingress-audit.example.internal", "--ca-file"),
        (WebhookClient(client_cert="/c.crt"), "127.0.0.1", "go together"),
        (WebhookClient(server="http://127.0.0.1:9440/audit"), "127.0.0.1", "only sent over https"),
    ],
)
def test_kubeconfig_mistakes_are_refused(
    tmp_path: Path, client: WebhookClient, config_host: str, message: str
) -> None:
    """A kubeconfig that could not work is not printed."""
    with pytest.raises(ConfigError, match=message):
        webhook_kubeconfig(_tls_config(tmp_path, host=config_host), client)


def test_listening_on_all_addresses_needs_a_server_url(tmp_path: Path) -> None:
    """0.0.0.0 is not an address the apiserver can post to."""
    config = replace(Config(), server=ServerConfig(host="0.0.0.0", insecure_http=True))
    with pytest.raises(ConfigError, match="--server"):
        webhook_kubeconfig(config, WebhookClient())
    doc = yaml.safe_load(webhook_kubeconfig(config, WebhookClient(server="http://10.0.0.5:9440/audit")))
    assert doc["clusters"][0]["cluster"]["server"] == "http://10.0.0.5:9440/audit"


@pytest.mark.parametrize("mode", ["batch", "blocking"])
def test_apiserver_flags(mode: Any) -> None:
    """The flags name the mode and the files, and the kubeadm snippet mounts them read-only."""
    text = apiserver_flags(mode)
    flags = [line for line in text.splitlines() if line.startswith("--")]

    assert f"--audit-webhook-mode={mode}" in flags
    assert "--audit-webhook-config-file=/etc/kubernetes/ingress-audit/webhook-kubeconfig.yaml" in flags
    assert any(f.startswith("--audit-webhook-batch-max-size") for f in flags) == (mode == "batch")
    snippet = yaml.safe_load(text.split("kube-apiserver.yaml\n", 1)[1])
    (mount,) = snippet["spec"]["containers"][0]["volumeMounts"]
    assert mount["readOnly"] is True
    assert snippet["spec"]["volumes"][0]["hostPath"]["path"] == mount["mountPath"]
    assert set(flags) <= set(snippet["spec"]["containers"][0]["command"])


def _levels(policy: dict[str, Any], group: str, resource: str) -> list[str]:
    return [
        rule["level"]
        for rule in policy["rules"]
        for kind in rule.get("resources", ())
        if kind["group"] == group and resource in kind["resources"]
    ]


def test_policy_follows_custom_rules() -> None:
    """A rule added to the filter is logged with bodies; patterns widen to all names."""
    spec = FilterSpec(
        stages=frozenset({"RequestReceived", "ResponseComplete"}),
        include=(
            Rule(api_groups=frozenset({"cert-manager.io"}), resources=frozenset({"certificates"})),
            Rule(
                api_groups=frozenset({""}),
                resources=frozenset({"configmaps"}),
                namespaces=Matcher(("dns-*",)),
                names=Matcher(("corefile",)),
            ),
        ),
    )
    policy = yaml.safe_load(audit_policy(replace(Config(), filter=spec)))

    assert "omitStages" not in policy  # RequestReceived is wanted by this filter
    assert _levels(policy, "cert-manager.io", "certificates") == ["RequestResponse"]
    assert _levels(policy, "cert-manager.io", "certificates/*") == ["RequestResponse"]
    (configmaps,) = [
        r
        for r in policy["rules"]
        if any(k["group"] == "" and "configmaps" in k["resources"] for k in r.get("resources", ()))
    ]
    assert "namespaces" not in configmaps
    assert configmaps["resources"][0]["resourceNames"] == ["corefile"]
    assert policy["rules"][-1] == {"level": "Metadata"}


def test_policy_profiles_differ_only_for_secrets() -> None:
    """metadata keeps Secret bodies away; request-response logs them for fingerprints."""
    metadata = yaml.safe_load(audit_policy(Config(), "metadata"))
    full = yaml.safe_load(audit_policy(Config(), "request-response"))

    assert _levels(metadata, "", "secrets") == ["Metadata"]
    assert _levels(full, "", "secrets") == ["RequestResponse"]
    assert _levels(metadata, "networking.k8s.io", "ingresses") == ["RequestResponse"]
    assert metadata["omitStages"] == ["RequestReceived"]


def test_apiserver_flags_stay_within_the_configs_limits(tmp_path: Path) -> None:
    """With a config whose limits are lower than the apiserver's defaults, the rendered batch
    and truncation sizes shrink to them: no batch the server would refuse with 413."""
    server = ServerConfig(
        max_events_per_request=100, max_body_bytes=4 * 1024 * 1024, max_event_bytes=256 * 1024
    )
    flags = apiserver_flags("batch", replace(Config(), server=server)).splitlines()

    assert "--audit-webhook-batch-max-size=100" in flags
    assert f"--audit-webhook-truncate-max-batch-size={4 * 1024 * 1024}" in flags
    assert f"--audit-webhook-truncate-max-event-size={256 * 1024}" in flags
    defaults = apiserver_flags("batch").splitlines()
    assert "--audit-webhook-batch-max-size=400" in defaults
    assert "--audit-webhook-truncate-max-batch-size=10485760" in defaults


def test_render_apiserver_flags_takes_the_config_as_deploy_md_says(tmp_path: Path, capsys: Any) -> None:
    """docs/deploy.md renders all three files with ``--config manifests/static-pod/config.yaml``."""
    config = ROOT / "manifests" / "static-pod" / "config.yaml"

    assert main(["render", "apiserver-flags", "--config", str(config)]) == 0
    assert "--audit-webhook-mode=batch" in capsys.readouterr().out
