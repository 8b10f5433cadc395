"""The files users copy (config/, examples/) stay true to the code."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.conftest import make_config, read_jsonl, settle
from tests.paths import ROOT
from tests.servers import need_binary
from webhook.commands.render import Profile, audit_policy
from webhook.commands.replay_server import replay_to_server
from webhook.config import Config, load_config
from webhook.server.app import create_app

FIXTURES = ROOT / "tests" / "fixtures" / "apiserver-v1.26"


def test_example_config_is_the_embedded_defaults() -> None:
    """config/ingress-audit.yaml documents the defaults: loading it changes nothing."""
    assert load_config(ROOT / "config" / "ingress-audit.yaml") == Config()


def _policy_level(policy: dict[str, Any], request: dict[str, Any]) -> str:
    """The level of the first policy rule that matches, as kube-apiserver evaluates it."""
    for rule in policy["rules"]:
        if "users" in rule and request.get("user") not in rule["users"]:
            continue
        if "userGroups" in rule and not set(rule["userGroups"]) & set(request.get("groups", ())):
            continue
        if "verbs" in rule and request["verb"] not in rule["verbs"]:
            continue
        if "namespaces" in rule and request.get("namespace") not in rule["namespaces"]:
            continue
        if "nonResourceURLs" in rule:
            path = request.get("path")
            if path is None or not any(fnmatch.fnmatch(path, p) for p in rule["nonResourceURLs"]):
                continue
        if "resources" in rule:
            if "resource" not in request:
                continue
            if not any(
                kind.get("group", "") == request["group"]
                and request["resource"] in kind.get("resources", [request["resource"]])
                and request.get("name") in kind.get("resourceNames", [request.get("name")])
                for kind in rule["resources"]
            ):
                continue
        level: str = rule["level"]
        return level
    return "None"


@pytest.mark.parametrize(
    ("request_", "level"),
    [
        (
            {
                "group": "networking.k8s.io",
                "resource": "ingresses",
                "verb": "patch",
                "user": "admin",
            },
            "RequestResponse",
        ),
        (
            {
                "group": "networking.k8s.io",
                "resource": "ingressclasses",
                "verb": "create",
                "user": "admin",
            },
            "RequestResponse",
        ),
        (
            {
                "group": "gateway.networking.k8s.io",
                "resource": "httproutes",
                "verb": "update",
                "user": "ci",
            },
            "RequestResponse",
        ),
        (
            {
                "group": "",
                "resource": "configmaps",
                "namespace": "kube-system",
                "name": "coredns",
                "verb": "update",
                "user": "admin",
            },
            "RequestResponse",
        ),
        ({"group": "", "resource": "secrets", "verb": "get", "user": "admin"}, "Metadata"),
        ({"group": "", "resource": "pods", "verb": "list", "user": ""}, "Metadata"),
        ({"group": "", "resource": "pods", "verb": "get", "user": "mallory"}, "Metadata"),
        (
            {
                "group": "",
                "resource": "events",
                "verb": "create",
                "user": "system:node:n1",
                "groups": ["system:nodes"],
            },
            "None",
        ),
        ({"path": "/healthz", "verb": "get", "user": "kubelet"}, "None"),
    ],
)
def test_recommended_policy_logs_what_the_filter_needs(request_: dict[str, Any], level: str) -> None:
    """The shipped policy sends every resource the default rules keep, and 401/403 on anything."""
    policy = yaml.safe_load((ROOT / "config" / "audit-policy.yaml").read_text())
    assert policy["apiVersion"] == "audit.k8s.io/v1"
    assert policy["kind"] == "Policy"
    assert _policy_level(policy, request_) == level


def test_webhook_kubeconfig_points_at_the_default_endpoint() -> None:
    """The example kubeconfig reaches `serve` on its defaults."""
    kubeconfig = yaml.safe_load((ROOT / "config" / "webhook-kubeconfig.yaml").read_text())
    (cluster,) = kubeconfig["clusters"]
    defaults = Config().server
    assert cluster["cluster"]["server"] == f"http://{defaults.host}:{defaults.port}/audit"
    assert kubeconfig["current-context"] in {c["name"] for c in kubeconfig["contexts"]}


def test_sample_eventlist_is_generated_from_the_captures() -> None:
    """examples/eventlist.json is what scripts/make-sample.py builds; it holds no secret."""
    built = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make-sample.py"), str(FIXTURES)],
        check=True,
        capture_output=True,
    ).stdout
    sample = (ROOT / "examples" / "eventlist.json").read_bytes()
    assert built == sample
    assert orjson.loads(sample)["kind"] == "EventList"
    secrets = (FIXTURES / "scenario-a" / "secrets.txt").read_text().split()
    assert secrets
    assert not [i for i, value in enumerate(secrets) if value.encode() in sample]


@pytest.mark.parametrize(
    ("name", "profile"),
    [("audit-policy.yaml", "metadata"), ("audit-policy-request-response.yaml", "request-response")],
)
def test_shipped_policies_are_rendered_from_the_default_rules(name: str, profile: Profile) -> None:
    """config/audit-policy*.yaml are `render audit-policy` of the defaults: they cannot drift."""
    assert (ROOT / "config" / name).read_text() == audit_policy(Config(), profile)


def _readme_jq_commands() -> list[str]:
    """Every ``jq`` command of the README's shell blocks, its continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = (line for block in blocks for line in re.split(r"\n(?=\S)", block.replace("\\\n", " ")))
    return [line.strip() for line in lines if line.startswith("jq ")]


async def test_the_readmes_jq_examples_answer_their_questions(aiohttp_client: Any, tmp_path: Path) -> None:
    """The quick start's data (the example EventList and audit log), then each jq line of the
    README as written: the TLS removal query finds the one removal, the 401/403 query only
    refusals, the alert query the alerts."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    body = (ROOT / "examples" / "eventlist.json").read_bytes()
    assert (
        await client.post("/audit", data=body, headers={"Content-Type": "application/json"})
    ).status == 200
    await replay_to_server(str(client.make_url("/audit")), [ROOT / "examples" / "audit.log"])
    await settle(client)
    commands = _readme_jq_commands()
    assert len(commands) == 3
    jq = need_binary(["jq"], "jq")

    def run(command: str) -> list[dict[str, Any]]:
        command = command.replace("ingress-audit-data/", f"{config.data_dir}/").replace("jq ", f"{jq} ", 1)
        out = subprocess.run(["bash", "-c", command], capture_output=True, check=True, timeout=30).stdout
        return [orjson.loads(line) for line in out.splitlines()]

    removed, refused, alerts = (run(command) for command in commands)
    by_id = {r["id"]: r for r in read_jsonl(config.data_dir / "records.jsonl")}
    removals = [r for r in by_id.values() if any(f["id"] == "tls-removed" for f in r.get("findings", ()))]
    assert len(removed) == len(removals) == 1
    assert removed[0]["verb"] in {"update", "patch"}
    assert refused
    assert {r["resource"] for r in refused} >= {"ingresses", "secrets"}
    assert len(refused) == sum(r.get("outcome", {}).get("code") in (401, 403) for r in by_id.values())
    assert {a["status"] for a in alerts} <= {"firing", "resolved"}
    assert alerts
