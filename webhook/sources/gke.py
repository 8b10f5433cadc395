"""GKE's Cloud Audit Log entries for the Kubernetes API, turned back into audit.k8s.io/v1 Events.

GKE's apiserver does not send audit Events anywhere we can receive; it writes each request as a
Cloud Logging ``LogEntry`` whose ``protoPayload`` is a ``google.cloud.audit.AuditLog`` with
``serviceName: k8s.io``. What it keeps, and so what we can rebuild:

- ``methodName`` ``io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>`` and
  ``resourceName`` ``<group|core>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]``
  give the verb and the objectRef. ``requestURI`` is rebuilt from them: a plausible path
  without any query (GKE keeps none, so ``dryRun``, ``fieldManager`` and exec commands are lost).
- ``status.code`` is a gRPC code, mapped back to HTTP (``grpc_to_http``). A nonzero code never
  becomes a success, and neither does an entry whose authorization was not granted.
- ``authenticationInfo.principalEmail`` is the user; groups are not logged by GKE.
- ``request``/``response`` are the objects, when GKE's fixed policy logged them.
- ``labels`` are the apiserver's audit annotations.
- ``operation.id`` names the request (``insertId`` when there is none): the auditID. Pub/Sub
  redelivers the same bytes, which map to the same Event, so the pipeline's dedupe drops them.

Level and stage are not logged: the stage is always ``ResponseComplete`` and the level is
inferred from which objects are present. The cluster is ``project_id/cluster_name`` from
``resource.labels``, accepted only if it is in the allow-list the caller passes.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from webhook.sources.cloud import CloudEvent, CloudReject
from webhook.sources.gke_names import UnparsableNameError, parse_request

__all__ = ["AUDIT_LOG_TYPE", "grpc_to_http", "map_log_entry"]

AUDIT_LOG_TYPE: Final = "type.googleapis.com/google.cloud.audit.AuditLog"
# google.rpc.Code → HTTP, as google/rpc/code.proto documents it; 0 is handled by the caller.
_GRPC_TO_HTTP: Final = {
    1: 499,  # CANCELLED
    2: 500,  # UNKNOWN
    3: 400,  # INVALID_ARGUMENT
    4: 504,  # DEADLINE_EXCEEDED
    5: 404,  # NOT_FOUND
    6: 409,  # ALREADY_EXISTS
    7: 403,  # PERMISSION_DENIED
    8: 429,  # RESOURCE_EXHAUSTED
    9: 400,  # FAILED_PRECONDITION
    10: 409,  # ABORTED
    11: 400,  # OUT_OF_RANGE
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    15: 500,  # DATA_LOSS
    16: 401,  # UNAUTHENTICATED
}
_STREAMING: Final = frozenset({"exec", "attach", "portforward"})
_IDENT: Final = re.compile(r"[\x21-\x7e]{1,256}")  # printable, no spaces: safe in a dead letter


class _Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def grpc_to_http(code: int, verb: str, subresource: str | None = None) -> int:
    """The HTTP status an apiserver answered, as far as a gRPC code tells it."""
    if code == 0:
        if subresource in _STREAMING:
            return 101
        return 201 if verb == "create" else 200
    return _GRPC_TO_HTTP.get(code, 500)


def map_log_entry(
    entry: object, clusters: Collection[str], *, identity: Mapping[str, str] | None = None
) -> CloudEvent | CloudReject:
    """One decoded LogEntry as an Event of an allowed cluster, or the reason it is not one.

    ``identity`` holds the caller's identifiers (a Pub/Sub messageId, a file line), kept in a reject.
    """
    ids = dict(identity or {})
    if not isinstance(entry, dict):
        return CloudReject(reason="malformed-log-entry", detail="the LogEntry is not an object", identity=ids)
    insert_id = entry.get("insertId")
    if isinstance(insert_id, str) and _IDENT.fullmatch(insert_id):
        ids["insertId"] = insert_id
    try:
        payload = _audit_payload(entry)
        cluster = _cluster(entry, clusters, ids)
    except _Rejected as exc:
        return CloudReject(reason=exc.reason, detail=exc.detail, identity=ids)
    try:
        ids["auditID"] = audit_id = _audit_id(entry)
        data = orjson.dumps(_event(entry, payload, audit_id))
    except _Rejected as exc:
        return CloudReject(reason=exc.reason, detail=exc.detail, cluster=cluster, identity=ids)
    except orjson.JSONEncodeError:
        detail = "the LogEntry's objects are nested too deeply to encode"
        return CloudReject(reason="event-too-deep", detail=detail, cluster=cluster, identity=ids)
    return CloudEvent(cluster=cluster, event=data)


def _audit_payload(entry: dict[str, Any]) -> dict[str, Any]:
    payload = entry.get("protoPayload")
    if not isinstance(payload, dict):
        raise _Rejected("not-k8s-audit", "the LogEntry has no protoPayload")
    if payload.get("@type", AUDIT_LOG_TYPE) != AUDIT_LOG_TYPE:
        raise _Rejected("not-k8s-audit", "protoPayload is not a Cloud Audit Log (@type)")
    if payload.get("serviceName") != "k8s.io":
        raise _Rejected("not-k8s-audit", "protoPayload.serviceName is not k8s.io")
    resource = entry.get("resource")
    if not isinstance(resource, dict) or resource.get("type") != "k8s_cluster":
        raise _Rejected("not-k8s-audit", "resource.type is not k8s_cluster")
    return payload


def _cluster(entry: dict[str, Any], clusters: Collection[str], ids: dict[str, str]) -> str:
    labels = entry["resource"].get("labels")
    labels = labels if isinstance(labels, dict) else {}
    project, name = labels.get("project_id"), labels.get("cluster_name")
    if not (isinstance(project, str) and _IDENT.fullmatch(project) and "/" not in project) or not (
        isinstance(name, str) and _IDENT.fullmatch(name) and "/" not in name
    ):
        raise _Rejected("missing-cluster", "resource.labels has no usable project_id and cluster_name")
    cluster = f"{project}/{name}"
    if cluster not in clusters:
        ids["claimed_cluster"] = cluster
        raise _Rejected(
            "cluster-not-allowed", "resource.labels names a cluster not in sources.pubsub.clusters"
        )
    return cluster


def _event(entry: dict[str, Any], payload: dict[str, Any], audit_id: str) -> dict[str, Any]:
    try:
        request = parse_request(payload.get("methodName"), payload.get("resourceName"))
    except UnparsableNameError as exc:
        raise _Rejected(exc.reason, exc.detail) from None
    verb, ref = request.verb, request.object_ref
    code, message = _status(entry, payload, verb, ref)
    objects = _objects(payload)
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse" if "responseObject" in objects else "Request" if objects else "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": request.request_uri,
        "verb": verb,
        "user": _user(payload),
    }
    meta = payload.get("requestMetadata")
    meta = meta if isinstance(meta, dict) else {}
    if isinstance(ip := meta.get("callerIp"), str) and ip:
        event["sourceIPs"] = [ip]
    if isinstance(agent := meta.get("callerSuppliedUserAgent"), str) and agent:
        event["userAgent"] = agent
    if ref is not None:
        event["objectRef"] = ref
    status: dict[str, Any] = {"metadata": {}}
    if code >= 400:
        status["status"] = "Failure"
        if message:
            status["message"] = message
    status["code"] = code
    event["responseStatus"] = status
    event.update(objects)
    event["requestReceivedTimestamp"] = event["stageTimestamp"] = _time(entry)
    labels = entry.get("labels")
    if isinstance(labels, dict) and labels:
        event["annotations"] = {k: v for k, v in labels.items() if isinstance(v, str)}
    return event


def _status(
    entry: dict[str, Any], payload: dict[str, Any], verb: str, ref: dict[str, str] | None
) -> tuple[int, str | None]:
    status = payload.get("status")
    status = {} if status is None else status
    if not isinstance(status, dict):
        raise _Rejected("malformed-log-entry", "protoPayload.status is not an object")
    grpc = status.get("code", 0)
    if not isinstance(grpc, int) or isinstance(grpc, bool):
        raise _Rejected("malformed-log-entry", "protoPayload.status.code is not an integer")
    code = grpc_to_http(grpc, verb, ref.get("subresource") if ref else None)
    if code < 400 and _denied(entry, payload):
        code = 403
    message = status.get("message")
    return code, message if isinstance(message, str) and message else None


def _denied(entry: dict[str, Any], payload: dict[str, Any]) -> bool:
    """An OK status next to a refused authorization is a denial: believe the refusal."""
    labels = entry.get("labels")
    if isinstance(labels, dict) and labels.get("authorization.k8s.io/decision") == "forbid":
        return True
    checks = payload.get("authorizationInfo")
    # proto3 JSON leaves ``granted: false`` out, so a check without ``granted: true`` was refused.
    return isinstance(checks, list) and any(
        isinstance(c, dict) and c.get("granted") is not True for c in checks
    )


def _objects(payload: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for field, key in (("request", "requestObject"), ("response", "responseObject")):
        value = payload.get(field)
        if value is None:
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "@type"}  # added by the AuditLog Struct
            if not value:
                continue
        elif not isinstance(value, list):
            raise _Rejected("malformed-log-entry", f"protoPayload.{field} is not an object")
        found[key] = value
    return found


def _user(payload: dict[str, Any]) -> dict[str, str]:
    info = payload.get("authenticationInfo")
    email = info.get("principalEmail") if isinstance(info, dict) else None
    return {"username": email} if isinstance(email, str) and email else {}


def _audit_id(entry: dict[str, Any]) -> str:
    operation = entry.get("operation")
    operation = operation if isinstance(operation, dict) else {}
    op_id = operation.get("id")
    if isinstance(op_id, str) and _IDENT.fullmatch(op_id) and operation.get("producer", "k8s.io") == "k8s.io":
        return op_id
    insert_id = entry.get("insertId")
    if isinstance(insert_id, str) and _IDENT.fullmatch(insert_id):
        return insert_id
    raise _Rejected("missing-audit-id", "the LogEntry has neither operation.id nor insertId")


def _time(entry: dict[str, Any]) -> str:
    """``timestamp`` (when the apiserver logged it) in the apiserver's own format."""
    value = entry.get("timestamp") or entry.get("receiveTimestamp")
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise _Rejected("malformed-log-entry", "timestamp is missing or not an RFC 3339 time")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
