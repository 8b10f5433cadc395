"""The captured apiserver events as GKE would have logged them: Cloud Audit Log entries.

The reverse of ``webhook.sources.gke``, written from what GKE's entries are documented and seen to
hold (one entry per request, names and gRPC status as in ``../shared/reviews/managed-clouds.md``
§2.1-2.2), so the mapping can be checked against real traffic rather than against itself.
"""

from __future__ import annotations

import base64
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from tests.conftest import capture_events
from webhook.filter import is_final_event

__all__ = [
    "CLUSTER",
    "HTTP_TO_GRPC",
    "final_events",
    "http_to_grpc",
    "log_entry",
    "push_body",
    "short_group",
]

PROJECT: Final = "my-project"
CLUSTER_NAME: Final = "prod-eu"
CLUSTER: Final = f"{PROJECT}/{CLUSTER_NAME}"
AUDIT_LOG: Final = "type.googleapis.com/google.cloud.audit.AuditLog"
HTTP_TO_GRPC: Final = {400: 3, 401: 16, 403: 7, 404: 5, 422: 3, 429: 8, 500: 13, 503: 14, 504: 4}
_READS: Final = frozenset({"get", "list", "watch"})


def http_to_grpc(code: int, reason: str | None = None) -> int:
    """The google.rpc code for an HTTP status, as GKE's audit backend would record it."""
    if code < 400:
        return 0
    if code == 409:
        return 6 if reason == "AlreadyExists" else 10
    return HTTP_TO_GRPC.get(code, 2)


def short_group(group: str) -> str:
    """methodName's group: ``core`` for the core group, the group minus ``.k8s.io`` otherwise."""
    return "core" if not group else group.removesuffix(".k8s.io")


def final_events(name: str) -> list[dict[str, Any]]:
    """The events of capture ``name`` that end a request: GKE logs one entry per request."""
    return [e for e in capture_events(name) if is_final_event(e)]


def _names(event: dict[str, Any]) -> tuple[str, str]:
    ref = event.get("objectRef")
    verb = event["verb"]
    if not ref:
        return f"io.k8s.{verb}", urlsplit(event["requestURI"]).path.lstrip("/")
    group = ref.get("apiGroup", "")
    version, resource = ref["apiVersion"], ref["resource"]
    sub = ref.get("subresource")
    method = ".".join(["io.k8s", short_group(group), version, resource, *([sub] if sub else []), verb])
    parts = [group or "core", version]
    if ref.get("namespace") and resource != "namespaces":
        parts += ["namespaces", ref["namespace"]]
    parts.append(resource)
    if ref.get("name"):
        parts.append(ref["name"])
    if sub:
        parts.append(sub)
    return method, "/".join(parts)


def _with_type(obj: Any, type_url: str) -> Any:
    return {"@type": type_url, **obj} if isinstance(obj, dict) else obj


def log_entry(
    event: dict[str, Any], *, project: str = PROJECT, cluster: str = CLUSTER_NAME
) -> dict[str, Any]:
    """The LogEntry GKE writes for the request ``event`` ended."""
    method, resource_name = _names(event)
    status = event.get("responseStatus") or {}
    code = status.get("code", 200)
    grpc = http_to_grpc(code, status.get("reason"))
    annotations = event.get("annotations") or {}
    check: dict[str, Any] = {"permission": method, "resource": resource_name}
    if annotations.get("authorization.k8s.io/decision") != "forbid" and code != 401:
        check = {"granted": True, **check}  # proto3 JSON leaves a false ``granted`` out
    payload: dict[str, Any] = {"@type": AUDIT_LOG}
    if event["user"].get("username"):
        payload["authenticationInfo"] = {"principalEmail": event["user"]["username"]}
    if code != 401:
        payload["authorizationInfo"] = [check]
    payload["methodName"] = method
    meta = {"callerIp": event["sourceIPs"][0]} if event.get("sourceIPs") else {}
    if event.get("userAgent"):
        meta["callerSuppliedUserAgent"] = event["userAgent"]
    payload["requestMetadata"] = meta
    payload["resourceName"] = resource_name
    if "requestObject" in event:
        payload["request"] = _with_type(event["requestObject"], "k8s.io/Request")
    if "responseObject" in event:
        payload["response"] = _with_type(event["responseObject"], "k8s.io/Response")
    payload["serviceName"] = "k8s.io"
    payload["status"] = {"code": grpc, "message": status.get("message", "")} if grpc else {}
    log = "data_access" if event["verb"] in _READS else "activity"
    entry: dict[str, Any] = {"insertId": event["auditID"]}
    if annotations:
        entry["labels"] = dict(annotations)
    entry["logName"] = f"projects/{project}/logs/cloudaudit.googleapis.com%2F{log}"
    entry["operation"] = {"first": True, "id": event["auditID"], "last": True, "producer": "k8s.io"}
    entry["protoPayload"] = payload
    entry["receiveTimestamp"] = event["stageTimestamp"].replace("Z", "123Z")
    entry["resource"] = {
        "labels": {"cluster_name": cluster, "location": "europe-west1", "project_id": project},
        "type": "k8s_cluster",
    }
    entry["timestamp"] = event["requestReceivedTimestamp"]
    return entry


def push_body(
    entry: dict[str, Any], *, message_id: str = "4242424242", subscription: str = "audit-push"
) -> bytes:
    """A push request's body carrying ``entry`` as a Log Router sink publishes it."""
    data = base64.b64encode(orjson.dumps(entry)).decode("ascii")
    message = {
        "attributes": {"logging.googleapis.com/timestamp": entry.get("timestamp", "")},
        "data": data,
        "messageId": message_id,
        "message_id": message_id,
        "publishTime": "2026-11-24T14:20:41.123Z",
        "publish_time": "2026-11-24T14:20:41.123Z",
    }
    return orjson.dumps(
        {"message": message, "subscription": f"projects/{PROJECT}/subscriptions/{subscription}"}
    )
