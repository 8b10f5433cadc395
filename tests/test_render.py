"""What `render` prints is what kube-apiserver needs, and consistent with the config."""

from __future__ import annotations

import base64
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from webhook.config import AuthConfig, Config, ServerConfig, TlsConfig
from webhook.errors import ConfigError
from webhook.filter import FilterSpec, Matcher, Rule
from webhook.render import WebhookClient, apiserver_flags, audit_policy, webhook_kubeconfig

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
    """With TLS: https URL, the CA as data, the configured token, and client cert paths."""
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
        "token": TOKEN,
    }


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
    config = replace(Config(), server=ServerConfig(host="0.0.0.0", insecure_http=True))  # noqa: S104
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
