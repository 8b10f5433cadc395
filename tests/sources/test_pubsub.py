"""GKE audit LogEntries, pushed by Pub/Sub or read from an export, as audit.k8s.io/v1 Events.

The entries are the captured apiserver traffic as GKE would have logged it
(``gke_entries.log_entry``): what the mapping gives back is compared with what the apiserver
really sent, field by field, knowing which parts GKE does not keep.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
import pytest
from pytest_aiohttp import AiohttpClient

from tests.conftest import captured_bodies, event_list, make_config, records_in, scenario_secrets, settle
from tests.sources.gke_entries import CLUSTER, final_events, http_to_grpc, log_entry, push_body
from webhook.errors import BadRequestError
from webhook.redact.leaks import scan
from webhook.server.app import create_app
from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.gke import grpc_to_http, map_log_entry
from webhook.sources.gke_names import UnparsableNameError, parse_request
from webhook.sources.pubsub import PushMessage, decode_push, map_push, read_gke_export

ALLOWED: Final = frozenset({CLUSTER})
_REF_FIELDS: Final = ("apiGroup", "apiVersion", "resource", "namespace", "name", "subresource")


def pushed(entry: dict[str, Any], clusters: frozenset[str] = ALLOWED) -> CloudEvent | CloudReject:
    return map_push(decode_push(push_body(entry)), clusters)


def event_of(item: CloudEvent | CloudReject) -> dict[str, Any]:
    assert isinstance(item, CloudEvent), item
    event: dict[str, Any] = orjson.loads(item.event)
    return event


def reject_of(item: CloudEvent | CloudReject) -> CloudReject:
    assert isinstance(item, CloudReject), item
    return item


def expected_code(native: dict[str, Any]) -> int:
    """What survives of the apiserver's code once GKE stored it as a gRPC code."""
    status = native.get("responseStatus") or {}
    code: int = status.get("code", 200)
    ref = native.get("objectRef") or {}
    return grpc_to_http(http_to_grpc(code, status.get("reason")), native["verb"], ref.get("subresource"))


def sample(name: str = "0009.json", resource: str = "ingresses") -> dict[str, Any]:
    """One final event about ``resource`` in a capture (by default the Ingress create of A05)."""
    return next(e for e in final_events(name) if (e.get("objectRef") or {}).get("resource") == resource)


# --- the captured traffic, through GKE and back -----------------------------------------------


@pytest.mark.parametrize("body", captured_bodies(), ids=lambda p: p.stem)
def test_every_captured_request_survives_the_round_trip(body: Path) -> None:
    """Verb, objectRef, user, code class, objects, annotations and IDs come back as sent."""
    events = final_events(body.name)
    assert events
    for native in events:
        event = event_of(pushed(log_entry(native)))

        assert event["auditID"] == native["auditID"]
        assert event["stage"] == "ResponseComplete"
        assert event["verb"] == native["verb"]
        assert urlsplit(event["requestURI"]).path == urlsplit(native["requestURI"]).path
        assert "?" not in event["requestURI"]
        native_ref = native.get("objectRef") or {}
        ref = event.get("objectRef") or {}
        assert {k: ref.get(k) for k in _REF_FIELDS} == {k: native_ref.get(k) for k in _REF_FIELDS}
        assert event["user"] == ({"username": native["user"]["username"]} if native["user"] else {})
        assert "groups" not in event["user"]
        assert event["sourceIPs"] == native["sourceIPs"]
        assert event["userAgent"] == native["userAgent"]
        assert event["responseStatus"]["code"] == expected_code(native)
        assert (event["responseStatus"]["code"] >= 400) == (native["responseStatus"]["code"] >= 400)
        for key in ("requestObject", "responseObject"):
            assert event.get(key) == native.get(key), key
        assert event.get("annotations") == native.get("annotations")
        assert event["requestReceivedTimestamp"] == native["requestReceivedTimestamp"]


def test_denials_in_the_captures_stay_denials() -> None:
    """The 401 and 403s of steps A20-A23 keep their exact codes."""
    for name, code in [("0028.json", 403), ("0030.json", 403), ("0031.json", 403), ("0032.json", 401)]:
        native = next(e for e in final_events(name) if e["responseStatus"]["code"] == code)
        assert event_of(pushed(log_entry(native)))["responseStatus"]["code"] == code


def test_the_event_is_shaped_like_the_apiservers() -> None:
    """Keys in the apiserver's order, a failure status with GKE's message, core group omitted."""
    native = next(e for e in final_events("0028.json") if e["responseStatus"]["code"] == 403)
    event = event_of(pushed(log_entry(native)))

    assert list(event) == [
        "kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
        "sourceIPs", "userAgent", "objectRef", "responseStatus", "responseObject",
        "requestReceivedTimestamp", "stageTimestamp", "annotations",
    ]  # fmt: skip
    assert event["objectRef"] == {
        "resource": "secrets",
        "namespace": "shop",
        "name": "db-creds",
        "apiVersion": "v1",
    }
    assert event["responseStatus"] == {
        "metadata": {},
        "status": "Failure",
        "message": native["responseStatus"]["message"],
        "code": 403,
    }
    assert event["responseObject"]["kind"] == "Status"
    assert event["level"] == "RequestResponse"


@pytest.mark.parametrize(
    ("present", "level"),
    [((), "Metadata"), (("request",), "Request"), (("request", "response"), "RequestResponse")],
)
def test_the_level_follows_the_objects_logged(present: tuple[str, ...], level: str) -> None:
    entry = log_entry(sample())
    for key in ("request", "response"):
        if key not in present:
            entry["protoPayload"].pop(key, None)
    assert event_of(pushed(entry))["level"] == level


def test_the_type_url_is_dropped_from_the_objects() -> None:
    """protoPayload adds ``@type`` to request and response; the objects come back without it."""
    entry = log_entry(sample())
    assert entry["protoPayload"]["request"]["@type"]
    event = event_of(pushed(entry))
    assert "@type" not in event["requestObject"]
    assert "@type" not in event["responseObject"]
    assert event["requestObject"]["kind"] == "Ingress"


# --- status codes -------------------------------------------------------------------------------


@pytest.mark.parametrize("grpc", [*range(1, 17), 17, 99, -1])
@pytest.mark.parametrize("verb", ["create", "get", "list", "patch", "delete", "watch"])
def test_a_nonzero_grpc_code_is_never_a_success(grpc: int, verb: str) -> None:
    """Whatever the verb, an error code maps to 4xx/5xx: a denial is never recorded as a success."""
    entry = log_entry(sample())
    entry["protoPayload"]["methodName"] = f"io.k8s.networking.v1.ingresses.{verb}"
    entry["protoPayload"]["status"] = {"code": grpc, "message": "no"}
    assert event_of(pushed(entry))["responseStatus"]["code"] >= 400


@pytest.mark.parametrize(
    ("grpc", "http"),
    [(0, 201), (3, 400), (4, 504), (5, 404), (6, 409), (7, 403), (8, 429), (9, 400), (10, 409),
     (13, 500), (14, 503), (16, 401)],
)  # fmt: skip
def test_grpc_codes_map_to_their_http_status(grpc: int, http: int) -> None:
    entry = log_entry(sample())
    entry["protoPayload"]["status"] = {"code": grpc} if grpc else {}
    assert event_of(pushed(entry))["responseStatus"]["code"] == http


def test_ok_codes_depend_on_the_verb_and_subresource() -> None:
    assert grpc_to_http(0, "create") == 201
    assert grpc_to_http(0, "get") == 200
    assert grpc_to_http(0, "create", "exec") == 101
    assert grpc_to_http(0, "create", "token") == 201


@pytest.mark.parametrize(
    "deny",
    [
        {"labels": {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}},
        {"authorizationInfo": [{"permission": "io.k8s.networking.v1.ingresses.create"}]},
        {"authorizationInfo": [{"granted": True}, {"granted": False}]},
    ],
    ids=["decision-forbid", "granted-left-out", "granted-false"],
)
def test_an_ok_status_beside_a_refused_authorization_is_a_403(deny: dict[str, Any]) -> None:
    """If GKE's status and its authorization disagree, the refusal wins."""
    entry = log_entry(sample())
    entry["protoPayload"]["status"] = {}
    if "labels" in deny:
        entry["labels"] = deny["labels"]
    else:
        entry["protoPayload"]["authorizationInfo"] = deny["authorizationInfo"]
    assert event_of(pushed(entry))["responseStatus"]["code"] == 403


# --- names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "resource_name", "verb", "ref", "uri"),
    [
        ("io.k8s.core.v1.secrets.get", "core/v1/namespaces/shop/secrets/db-creds", "get",
         {"resource": "secrets", "namespace": "shop", "name": "db-creds", "apiVersion": "v1"},
         "/api/v1/namespaces/shop/secrets/db-creds"),
        ("io.k8s.networking.v1.ingresses.create",
         "networking.k8s.io/v1/namespaces/shop/ingresses/web", "create",
         {"resource": "ingresses", "namespace": "shop", "name": "web", "apiGroup": "networking.k8s.io",
          "apiVersion": "v1"},
         "/apis/networking.k8s.io/v1/namespaces/shop/ingresses"),
        ("io.k8s.networking.v1.ingresses.list", "networking.k8s.io/v1/ingresses", "list",
         {"resource": "ingresses", "apiGroup": "networking.k8s.io", "apiVersion": "v1"},
         "/apis/networking.k8s.io/v1/ingresses"),
        ("io.k8s.networking.v1.ingressclasses.delete", "networking.k8s.io/v1/ingressclasses/nginx", "delete",
         {"resource": "ingressclasses", "name": "nginx", "apiGroup": "networking.k8s.io", "apiVersion": "v1"},
         "/apis/networking.k8s.io/v1/ingressclasses/nginx"),
        ("io.k8s.core.v1.namespaces.get", "core/v1/namespaces/shop", "get",
         {"resource": "namespaces", "namespace": "shop", "name": "shop", "apiVersion": "v1"},
         "/api/v1/namespaces/shop"),
        ("io.k8s.core.v1.namespaces.create", "core/v1/namespaces/shop", "create",
         {"resource": "namespaces", "name": "shop", "apiVersion": "v1"},
         "/api/v1/namespaces"),
        ("io.k8s.core.v1.namespaces.status.update", "core/v1/namespaces/shop/status", "update",
         {"resource": "namespaces", "namespace": "shop", "name": "shop", "apiVersion": "v1",
          "subresource": "status"},
         "/api/v1/namespaces/shop/status"),
        ("io.k8s.networking.v1.ingresses.status.update",
         "networking.k8s.io/v1/namespaces/shop/ingresses/web/status", "update",
         {"resource": "ingresses", "namespace": "shop", "name": "web", "apiGroup": "networking.k8s.io",
          "apiVersion": "v1", "subresource": "status"},
         "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web/status"),
        ("io.k8s.core.v1.pods.exec.create", "core/v1/namespaces/shop/pods/api-1/exec", "create",
         {"resource": "pods", "namespace": "shop", "name": "api-1", "apiVersion": "v1",
          "subresource": "exec"},
         "/api/v1/namespaces/shop/pods/api-1/exec"),
        ("io.k8s.core.v1.services.proxy.get", "core/v1/namespaces/shop/services/web/proxy/admin/x?y", "get",
         {"resource": "services", "namespace": "shop", "name": "web", "apiVersion": "v1",
          "subresource": "proxy"},
         "/api/v1/namespaces/shop/services/web/proxy/admin/x%3Fy"),
        ("io.k8s.gateway.networking.v1beta1.httproutes.patch",
         "gateway.networking.k8s.io/v1beta1/namespaces/shop/httproutes/r", "patch",
         {"resource": "httproutes", "namespace": "shop", "name": "r", "apiGroup": "gateway.networking.k8s.io",
          "apiVersion": "v1beta1"},
         "/apis/gateway.networking.k8s.io/v1beta1/namespaces/shop/httproutes/r"),
        ("io.k8s.rbac.authorization.v1.clusterroles.list", None, "list",
         {"resource": "clusterroles", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
         "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
        ("io.k8s.get", "readyz", "get", None, "/readyz"),
        ("io.k8s.get", "apis/networking.k8s.io/v1", "get", None, "/apis/networking.k8s.io/v1"),
    ],
)  # fmt: skip
def test_method_and_resource_names_give_verb_ref_and_uri(
    method: str, resource_name: str | None, verb: str, ref: dict[str, str] | None, uri: str
) -> None:
    found = parse_request(method, resource_name)
    assert (found.verb, found.object_ref, found.request_uri) == (verb, ref, uri)


@pytest.mark.parametrize(
    ("method", "resource_name", "reason"),
    [
        ("io.k8s.core.v1.secrets.get", "core/v1/namespaces/shop/configmaps/x", "malformed-log-entry"),
        ("io.k8s.core.v1.secrets.get", "core/v2/namespaces/shop/secrets/x", "malformed-log-entry"),
        ("io.k8s.core.v1.secrets.get", "core/v1/namespaces/shop/secrets/x/extra", "malformed-log-entry"),
        ("io.k8s.core.v1.pods.exec.create", "core/v1/namespaces/shop/pods/x/attach", "malformed-log-entry"),
        ("io.k8s.core.v1.secrets.get", "core//namespaces", "malformed-log-entry"),
        ("io.k8s.get", None, "malformed-log-entry"),
        ("io.k8s.core.v1.secrets.get", 7, "malformed-log-entry"),
        ("google.container.v1.ClusterManager.GetCluster", "projects/p", "unknown-method"),
        ("io.k8s.core.secrets.get", "core/v1/secrets", "unknown-method"),
        ("io.k8s.v1.secrets.get", "core/v1/secrets", "unknown-method"),
        ("io.k8s.core.v1.pods.a.b.get", "core/v1/pods", "unknown-method"),
        ("io.k8s.core.v1.secrets.GET", "core/v1/secrets", "unknown-method"),
        (None, "core/v1/secrets", "unknown-method"),
    ],
)
def test_names_that_do_not_fit_are_refused(method: object, resource_name: object, reason: str) -> None:
    with pytest.raises(UnparsableNameError) as info:
        parse_request(method, resource_name)
    assert info.value.reason == reason


# --- identity, clusters, what is not ours ---------------------------------------------------------


def test_the_audit_id_is_the_operation_then_the_insert_id() -> None:
    """operation.id names the request; insertId stands in when there is no k8s.io operation."""
    entry = log_entry(sample())
    entry["insertId"] = "insert-1"
    assert event_of(pushed(entry))["auditID"] == sample()["auditID"]

    entry["operation"]["producer"] = "container.googleapis.com"
    assert event_of(pushed(entry))["auditID"] == "insert-1"

    del entry["operation"]
    assert event_of(pushed(entry))["auditID"] == "insert-1"

    del entry["insertId"]
    assert reject_of(pushed(entry)).reason == "missing-audit-id"


def test_the_cluster_is_project_and_name_from_the_resource_labels() -> None:
    item = pushed(log_entry(sample()))
    assert isinstance(item, CloudEvent)
    assert item.cluster == "my-project/prod-eu"


@pytest.mark.parametrize(
    ("project", "cluster"),
    [("my-project", "prod-us"), ("other-project", "prod-eu"), ("prod-eu", "my-project")],
)
def test_a_cluster_not_listed_is_refused(project: str, cluster: str) -> None:
    """Only listed project_id/cluster_name pairs are accepted, whatever else the entry says."""
    found = reject_of(pushed(log_entry(sample(), project=project, cluster=cluster)))
    assert found.reason == "cluster-not-allowed"
    assert found.cluster is None
    assert found.identity["claimed_cluster"] == f"{project}/{cluster}"
    assert found.identity["messageId"] == "4242424242"
    assert found.identity["subscription"] == "projects/my-project/subscriptions/audit-push"
    assert project not in found.detail


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"project_id": "my-project"},
        {"project_id": "my-project", "cluster_name": 3},
        {"cluster_name": "prod-eu"},
        {"project_id": "my-project/prod-eu", "cluster_name": ""},
        {"project_id": "my-project", "cluster_name": "prod-eu/x"},
        {"project_id": "my project", "cluster_name": "prod-eu"},
    ],
)
def test_an_entry_without_a_cluster_is_refused(labels: dict[str, Any]) -> None:
    entry = log_entry(sample())
    entry["resource"]["labels"] = labels
    assert reject_of(pushed(entry)).reason == "missing-cluster"


def test_nothing_is_accepted_when_no_cluster_is_listed() -> None:
    assert reject_of(pushed(log_entry(sample()), frozenset())).reason == "cluster-not-allowed"


def _compute_entry() -> dict[str, Any]:
    entry = log_entry(sample())
    entry["protoPayload"]["serviceName"] = "compute.googleapis.com"
    entry["protoPayload"]["methodName"] = "v1.compute.instances.insert"
    entry["resource"] = {"type": "gce_instance", "labels": {"project_id": "my-project"}}
    return entry


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    entry = log_entry(sample())
    target = entry
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return entry


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (_compute_entry(), "not-k8s-audit"),
        ({**_with(("protoPayload",), None), "textPayload": "hello"}, "not-k8s-audit"),
        (_with(("protoPayload", "@type"), "type.googleapis.com/google.cloud.audit.Other"), "not-k8s-audit"),
        (_with(("resource", "type"), "gke_cluster"), "not-k8s-audit"),
        (_with(("protoPayload", "serviceName"), None), "not-k8s-audit"),
        (_with(("protoPayload", "methodName"), "io.k8s.core.v1"), "unknown-method"),
        (_with(("protoPayload", "status"), "OK"), "malformed-log-entry"),
        (_with(("protoPayload", "status"), {"code": "7"}), "malformed-log-entry"),
        (_with(("protoPayload", "status"), {"code": True}), "malformed-log-entry"),
        (_with(("protoPayload", "request"), "a string"), "malformed-log-entry"),
        (_with(("timestamp",), "yesterday"), "malformed-log-entry"),
        (_with(("timestamp",), "2026-11-24T14:20:40"), "malformed-log-entry"),
    ],
    ids=[
        "compute", "text-payload", "other-payload-type", "gke-cluster-resource", "no-service",
        "bad-method", "status-string", "code-string", "code-bool", "request-string", "timestamp-words",
        "timestamp-without-zone",
    ],
)  # fmt: skip
def test_entries_that_are_not_k8s_audit_events_are_refused(entry: dict[str, Any], reason: str) -> None:
    found = reject_of(pushed(entry))
    assert found.reason == reason
    assert found.identity["insertId"] == sample()["auditID"]


def test_a_payload_that_is_not_a_log_entry_is_refused() -> None:
    for data in (b"[1, 2]", b'"text"', b"null"):
        assert (
            reject_of(map_push(PushMessage(message_id="1", data=data), ALLOWED)).reason
            == "malformed-log-entry"
        )
    found = reject_of(map_push(PushMessage(message_id="1", data=b"{not json"), ALLOWED))
    assert (found.reason, found.identity) == ("not-json", {"messageId": "1"})


def test_objects_nested_too_deep_to_encode_are_refused_alone() -> None:
    """orjson decodes deeper than it encodes: such an entry is a reject, not an exception."""
    entry = log_entry(sample())
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(300):
        deep = {"d": deep}
    entry["protoPayload"]["request"] = deep
    found = reject_of(map_log_entry(entry, ALLOWED))
    assert (found.reason, found.cluster) == ("event-too-deep", CLUSTER)
    assert found.identity["auditID"] == sample()["auditID"]


def test_timestamps_are_written_the_apiservers_way() -> None:
    """Cloud Logging's nanoseconds and offsets become microseconds in UTC with a Z."""
    entry = log_entry(sample())
    entry["timestamp"] = "2026-11-24T15:20:40.457086123+01:00"
    event = event_of(pushed(entry))
    assert event["requestReceivedTimestamp"] == event["stageTimestamp"] == "2026-11-24T14:20:40.457086Z"

    del entry["timestamp"]
    assert event_of(pushed(entry))["stageTimestamp"] == entry["receiveTimestamp"][:26] + "Z"


# --- Pub/Sub redeliveries ---------------------------------------------------------------------------


def test_a_redelivery_maps_to_the_very_same_event() -> None:
    """Same LogEntry, same bytes out: whether redelivered or published twice by two sinks."""
    entry = log_entry(sample())
    first = map_push(decode_push(push_body(entry)), ALLOWED)
    again = map_push(decode_push(push_body(entry)), ALLOWED)
    other_sink = map_push(decode_push(push_body(entry, message_id="999", subscription="b")), ALLOWED)
    assert first == again
    assert isinstance(other_sink, CloudEvent)
    assert isinstance(first, CloudEvent)
    assert other_sink.event == first.event


async def test_redeliveries_never_make_a_second_record(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    """The pipeline's dedupe drops a redelivered push's event: one record, then a duplicate."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    body = push_body(log_entry(sample()))
    answers = []
    for _ in range(3):
        event = event_of(map_push(decode_push(body), ALLOWED))
        resp = await client.post(
            "/audit", data=event_list(event), headers={"Content-Type": "application/json"}
        )
        answers.append((resp.status, await resp.json()))
    await settle(client)

    assert [a["records"] for _, a in answers] == [1, 0, 0]
    assert [a["duplicates"] for _, a in answers] == [0, 1, 1]
    assert [r["audit_id"] for r in records_in(config)] == [sample()["auditID"]]


async def test_secrets_pushed_from_gke_are_redacted_like_any_secret(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The rebuilt objectRef names ``secrets``, so the pipeline redacts them: no value on disk."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    events = [
        event_of(pushed(log_entry(native)))
        for name in SECRET_CAPTURES
        for native in final_events(name)
        if (native.get("objectRef") or {}).get("resource") == "secrets"
    ]
    resp = await client.post("/audit", data=event_list(*events), headers={"Content-Type": "application/json"})
    assert resp.status == 200
    await settle(client)

    assert {r["object"]["resource"] for r in records_in(config)} == {"secrets"}
    assert scan([config.data_dir], scenario_secrets()) == []


# --- the push envelope --------------------------------------------------------------------------------


def test_a_push_body_decodes_to_its_message() -> None:
    entry = log_entry(sample())
    doc = orjson.loads(push_body(entry))
    doc["deliveryAttempt"] = 3
    message = decode_push(orjson.dumps(doc))

    assert message.message_id == "4242424242"
    assert orjson.loads(message.data) == entry
    assert message.publish_time == "2026-11-24T14:20:41.123Z"
    assert message.subscription == "projects/my-project/subscriptions/audit-push"
    assert message.attributes == {"logging.googleapis.com/timestamp": entry["timestamp"]}
    assert message.delivery_attempt == 3


def test_snake_case_and_url_safe_unpadded_data_are_accepted() -> None:
    data = base64.urlsafe_b64encode(b'{"a":"\xff\xfe>?"}').rstrip(b"=").decode()
    message = decode_push(orjson.dumps({"message": {"data": data, "message_id": "7"}}))
    assert (message.message_id, message.data) == ("7", b'{"a":"\xff\xfe>?"}')
    assert message.subscription is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "not-json"),
        (b"[]", "not-push-message"),
        (b'{"message": "x"}', "not-push-message"),
        (b'{"message": {"data": "e30="}}', "not-push-message"),
        (b'{"message": {"data": "e30=", "messageId": "has space"}}', "not-push-message"),
        (b'{"message": {"messageId": "1"}}', "not-push-message"),
        (b'{"message": {"messageId": "1", "data": ""}}', "not-push-message"),
        (b'{"message": {"messageId": "1", "data": 5}}', "not-push-message"),
        (b'{"message": {"messageId": "1", "data": "e30=", "attributes": {"a": 1}}}', "not-push-message"),
        (b'{"message": {"messageId": "1", "data": "e30=", "attributes": []}}', "not-push-message"),
        (b'{"message": {"messageId": "1", "data": "not base64!"}}', "undecodable-data"),
        (b'{"message": {"messageId": "1", "data": "abcde"}}', "undecodable-data"),
    ],
)
def test_a_body_that_is_not_a_push_is_a_400(body: bytes, code: str) -> None:
    with pytest.raises(BadRequestError) as info:
        decode_push(body)
    assert (info.value.code, info.value.http_status) == (code, 400)


# --- Cloud Logging exports (replay --format gke) -----------------------------------------------------


def _exported(names: tuple[str, ...] = ("0009.json", "0028.json", "0032.json")) -> list[dict[str, Any]]:
    return [log_entry(e) for name in names for e in final_events(name)]


def test_an_export_in_json_lines_is_read_entry_by_entry() -> None:
    """One LogEntry per line (a sink to Cloud Storage); a broken line is rejected alone."""
    entries = _exported()
    lines = [orjson.dumps(e) + b"\n" for e in entries]
    lines.insert(2, b"\n")
    lines.insert(3, b'{"insertId": "broken", \n')

    found = list(read_gke_export(lines, ALLOWED, source="audit.json"))

    rejects = [f for f in found if isinstance(f, CloudReject)]
    assert [(r.reason, dict(r.identity)) for r in rejects] == [
        ("not-json", {"source": "audit.json", "line": "4"})
    ]
    events = [event_of(f) for f in found if isinstance(f, CloudEvent)]
    assert [e["auditID"] for e in events] == [e["insertId"] for e in entries]


def test_gcloud_logging_read_json_output_is_read_as_one_array() -> None:
    """``gcloud logging read --format=json`` prints one indented array over many lines."""
    entries = _exported()
    text = orjson.dumps(entries, option=orjson.OPT_INDENT_2)

    found = list(read_gke_export(text.splitlines(keepends=True), ALLOWED))

    assert [event_of(f)["auditID"] for f in found] == [e["insertId"] for e in entries]


def test_one_bad_element_of_an_array_costs_only_itself() -> None:
    entries = _exported(("0009.json",))
    good = [orjson.dumps(e, option=orjson.OPT_INDENT_2) for e in entries]
    text = b"[\n" + b",\n".join([good[0], b'{"insertId": NaN}', *good[1:]]) + b"\n]\n"

    found = list(read_gke_export(text.splitlines(keepends=True), ALLOWED, source="x.json"))

    assert [(f.reason, dict(f.identity)) for f in found if isinstance(f, CloudReject)] == [
        ("not-json", {"source": "x.json", "index": "1"})
    ]
    assert sum(isinstance(f, CloudEvent) for f in found) == len(entries)


def test_a_broken_array_is_one_reject() -> None:
    found = list(read_gke_export([b"[\n", b'  {"a": 1},\n', b'  {"b": \n'], ALLOWED))
    assert [f.reason for f in found if isinstance(f, CloudReject)] == ["not-json"]
    assert len(found) == 1


def test_an_export_with_other_clusters_and_services_keeps_only_ours() -> None:
    entries = [log_entry(sample()), log_entry(sample(), cluster="staging"), _compute_entry()]
    found = list(read_gke_export([orjson.dumps(e) for e in entries], ALLOWED))
    assert [f.reason if isinstance(f, CloudReject) else "event" for f in found] == [
        "event",
        "cluster-not-allowed",
        "not-k8s-audit",
    ]


# --- secret values ---------------------------------------------------------------------------------


SECRET_CAPTURES: Final = ("0007.json", "0011.json", "0013.json", "0021.json", "0023.json", "0048.json")


def _spoiled(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry broken in each way a reject can be made, its objects (and secrets) kept."""
    out = []
    for path, value in [
        (("resource", "labels", "cluster_name"), "elsewhere"),
        (("resource", "labels"), {}),
        (("protoPayload", "serviceName"), "secretmanager.googleapis.com"),
        (("protoPayload", "methodName"), "io.k8s.core.v1.secrets"),
        (("protoPayload", "resourceName"), "core/v1/namespaces/shop/configmaps/x"),
        (("protoPayload", "status"), {"code": "7", "message": "x"}),
        (("timestamp",), "never"),
        (("insertId",), None),
    ]:
        spoiled = orjson.loads(orjson.dumps(entry))
        target = spoiled
        for key in path[:-1]:
            target = target[key]
        if value is None:
            del target[path[-1]]
            spoiled.pop("operation", None)
        else:
            target[path[-1]] = value
        out.append(spoiled)
    return out


def test_no_secret_value_reaches_a_reject_or_an_error() -> None:
    """Entries carrying the captures' secrets, refused every way: no value in any reject or error."""
    secrets = scenario_secrets()
    checked = carrying = 0
    for name in SECRET_CAPTURES:
        for native in (e for e in final_events(name) if e.get("objectRef")):
            entry = log_entry(native)
            body = push_body(entry)
            carrying += any(s.encode() in orjson.dumps(entry) for s in secrets)
            for spoiled in _spoiled(entry):
                found = reject_of(pushed(spoiled))
                text = orjson.dumps(
                    [found.reason, found.detail, found.cluster, dict(found.identity)]
                ).decode()
                assert not [s for s in secrets if s in text], found.reason
                checked += 1
            no_id = body.replace(b'"messageId"', b'"m"').replace(b'"message_id"', b'"n"')
            for broken in (body[:-7], body.replace(b'"data":"', b'"data":"!'), no_id):
                with pytest.raises(BadRequestError) as info:
                    decode_push(broken)
                assert not [s for s in secrets if s in str(info.value)]
            lines = [orjson.dumps(entry)[:-3], orjson.dumps(entry)]
            for item in read_gke_export(lines, frozenset()):
                text = orjson.dumps([reject_of(item).detail, dict(reject_of(item).identity)]).decode()
                assert not [s for s in secrets if s in text]
    assert checked > 50
    assert carrying >= 5  # the control: these entries do hold the values


def test_identifiers_that_are_not_short_printable_strings_are_not_kept() -> None:
    """A reject keeps identifiers only; a value with spaces or of absurd length is left out."""
    entry = log_entry(sample(), cluster="elsewhere")
    entry["insertId"] = "has spaces in it"
    assert "insertId" not in reject_of(pushed(entry)).identity
    entry["insertId"] = "x" * 300
    assert "insertId" not in reject_of(pushed(entry)).identity


def test_map_log_entry_takes_a_decoded_entry() -> None:
    """The function under both paths: a dict in, the same event as through a push."""
    entry = log_entry(sample())
    assert map_log_entry(entry, ALLOWED) == map_push(decode_push(push_body(entry)), ALLOWED)
