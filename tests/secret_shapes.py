"""Hypothesis strategies for every shape in which a Secret value reaches the audit webhook.

Each strategy yields a ``Planted`` event: the values planted in it all start with ``MARKER``,
which no key, name or fixed field can contain, so finding any encoding of one in the redacted
output is a leak and never a coincidence.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Final

import trustme
from hypothesis import strategies as st

__all__ = [
    "CAPTURES",
    "KEYS",
    "LAST_APPLIED",
    "MARKER",
    "SCENARIO",
    "SHAPES",
    "Planted",
    "SecretSpec",
    "audit_event",
    "b64",
    "ca_pem",
    "capture_events",
    "captured_bodies",
    "copied_secret",
    "copied_values",
    "go_json",
    "secret_object",
    "secret_specs",
]

SCENARIO: Final = Path(__file__).resolve().parent / "fixtures/apiserver-v1.26/scenario-a"
CAPTURES: Final = SCENARIO / "captures"
LAST_APPLIED: Final = "kubectl.kubernetes.io/last-applied-configuration"
MARKER: Final = "QZXW"  # upper case: keys, names and namespaces below are lower case

_keys = KEYS = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,11}", fullmatch=True)
_names = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
_ECHOES: Final = ("Secret", "v1", "Opaque", "data", "shop", "metadata", "hmac-sha256:", "=")


def captured_bodies() -> list[Path]:
    """Every ``NNNN.json`` of scenario A (headers files excluded)."""
    return sorted(CAPTURES.glob("[0-9][0-9][0-9][0-9].json"))


def capture_events(name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((CAPTURES / name).read_bytes())["items"]
    assert items, f"{name} holds no events"
    return items


@cache
def ca_pem() -> bytes:
    """A real CA certificate, as a service-account token Secret's ca.crt holds."""
    return trustme.CA().cert_pem.bytes()


def b64(value: str | bytes) -> str:
    return base64.b64encode(value.encode() if isinstance(value, str) else value).decode()


def _raw(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True)
class Planted:
    event: dict[str, Any]
    values: tuple[str | bytes, ...]  # no encoding of these may survive
    fingerprinted: tuple[bytes, ...]  # the fingerprints of these must be in the output
    sources: tuple[str, ...] | None = None  # SecretDetails.source expected, in order
    dropped: tuple[str, ...] = ()


@dataclass(frozen=True)
class SecretSpec:
    name: str
    namespace: str
    data: dict[str, str | bytes]
    string_data: dict[str, str] = field(default_factory=dict)

    @property
    def values(self) -> tuple[str | bytes, ...]:
        return (*self.data.values(), *self.string_data.values())

    @property
    def raw(self) -> tuple[bytes, ...]:
        return tuple(_raw(v) for v in self.values)


_LONG_ALPHABET: Final = 'abcdefghijklmnopqrstuvwxyz0123456789+/=é€\n"\\'


def _long_text(seed: int, size: int) -> str:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not a key
    return "".join(rng.choices(_LONG_ALPHABET, k=size))


def _long_binary(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)  # noqa: S311 - reproducible test data


_seeds = st.integers(0, 2**32)
_texts = st.one_of(
    st.text(max_size=30).map(MARKER.__add__),
    st.sampled_from(_ECHOES).map(MARKER.__add__),  # a substring of other fields
    st.builds(_long_text, _seeds, st.integers(2000, 20000)).map(MARKER.__add__),
)
_binaries = st.one_of(
    st.binary(max_size=30).map(MARKER.encode().__add__),
    st.builds(_long_binary, _seeds, st.integers(5000, 30000)).map(MARKER.encode().__add__),
)


@st.composite
def secret_specs(draw: st.DrawFn, *, string_data: bool = True) -> SecretSpec:
    data: dict[str, str | bytes] = draw(
        st.dictionaries(_keys, st.one_of(_texts, _binaries), min_size=1, max_size=4)
    )
    first = next(iter(data.values()))
    if draw(st.booleans()) and len(first) > len(MARKER) + 1:
        data[draw(_keys)] = first[: len(first) - 1]  # a value that is a prefix of another
    texts = st.dictionaries(_keys, _texts, max_size=3) if string_data else st.just({})
    return SecretSpec(name=draw(_names), namespace=draw(_names), data=data, string_data=draw(texts))


def _manifest(spec: SecretSpec, type_: str) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"annotations": {}, "name": spec.name, "namespace": spec.namespace},
        "data": {k: b64(v) for k, v in spec.data.items()},
        "type": type_,
    }
    if spec.string_data:
        manifest["stringData"] = dict(spec.string_data)
    return manifest


def secret_object(
    spec: SecretSpec,
    *,
    kind: bool = True,
    type_: str = "Opaque",
    last_applied: bool = False,
    string_data: bool = True,
) -> dict[str, Any]:
    fields: dict[str, Any] = {f"f:{k}": {} for k in spec.data}
    metadata: dict[str, Any] = {
        "name": spec.name,
        "namespace": spec.namespace,
        "uid": "af3088f4-80e4-4a9a-8cca-512f440ce7b7",
        "resourceVersion": "203",
        "creationTimestamp": "2026-11-24T14:20:50Z",
        "labels": {"app": "shop"},
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, **fields}, "f:type": {}},
            }
        ],
    }
    if last_applied:
        text = json.dumps(_manifest(spec, type_), sort_keys=True, separators=(",", ":"))
        metadata["annotations"] = {LAST_APPLIED: text + "\n", "team": "shop"}
    obj: dict[str, Any] = {"kind": "Secret", "apiVersion": "v1"} if kind else {}
    obj.update(metadata=metadata, data={k: b64(v) for k, v in spec.data.items()}, type=type_)
    if string_data and spec.string_data:
        obj["stringData"] = dict(spec.string_data)
    return obj


def audit_event(
    resource: str | None,
    verb: str,
    *,
    request: Any = None,
    response: Any = None,
    query: str = "",
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "5f0c1a7e-2b8d-4c61-9d0e-6a1f3b2c4d5e",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/shop/{resource or 'x'}{query}",
        "verb": verb,
        "user": {"username": "admin", "groups": ["system:masters"]},
        "responseStatus": status or {"metadata": {}, "code": 200},
    }
    if resource is not None:
        event["objectRef"] = {"resource": resource, "namespace": "shop", "apiVersion": "v1"}
    if request is not None:
        event["requestObject"] = request
    if response is not None:
        event["responseObject"] = response
    return event


def _planted(event: dict[str, Any], specs: list[SecretSpec], **more: Any) -> Planted:
    values = tuple(v for s in specs for v in s.values) + more.pop("values", ())
    fingerprinted = tuple(r for s in specs for r in s.raw) + more.pop("fingerprinted", ())
    return Planted(event=event, values=values, fingerprinted=fingerprinted, **more)


Shape = Callable[[st.DrawFn], Planted]
SHAPES: dict[str, st.SearchStrategy[Planted]] = {}


def _shape(function: Shape) -> Shape:
    SHAPES[function.__name__.removeprefix("_").replace("_", "-")] = st.composite(function)()
    return function


_COLUMNS: Final = ("Name", "Type", "Data", "Age")
_LA: Final = ".metadata.annotations.last-applied-configuration"
_DELETE_OPTIONS: Final = {
    "kind": "DeleteOptions",
    "apiVersion": "meta.k8s.io/__internal",
    "propagationPolicy": "Background",
}


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...] = _COLUMNS) -> dict[str, Any]:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "201"},
        "columnDefinitions": [
            {"name": n, "type": "string", "format": "", "description": "d", "priority": 0} for n in columns
        ],
        "rows": rows,
    }


def _last_applied(manifest: Any) -> str:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")) + "\n"


@_shape
def _create(draw: st.DrawFn) -> Planted:
    spec = draw(secret_specs())
    query = draw(st.sampled_from(["?fieldManager=kubectl-create", "?dryRun=All"]))
    event = audit_event(
        "secrets",
        "create",
        request=secret_object(spec),
        response=secret_object(spec, string_data=False),
        query=query,
        status={"metadata": {}, "code": 201},
    )
    return _planted(event, [spec], sources=("requestObject", "responseObject"))


@_shape
def _client_side_apply(draw: st.DrawFn) -> Planted:
    spec = draw(secret_specs())
    obj = secret_object(spec, last_applied=True, string_data=False)
    event = audit_event("secrets", "create", request=obj, response=obj)
    sources = ("requestObject", f"requestObject{_LA}", "responseObject", f"responseObject{_LA}")
    return _planted(event, [spec], sources=sources)


@_shape
def _server_side_apply(draw: st.DrawFn) -> Planted:
    spec = draw(secret_specs())
    event = audit_event(
        "secrets",
        "patch",
        request=secret_object(spec),
        response=secret_object(spec, string_data=False),
        query="?fieldManager=kubectl&force=false",
    )
    return _planted(event, [spec], sources=("requestObject", "responseObject"))


@_shape
def _secret_list(draw: st.DrawFn) -> Planted:
    specs = draw(st.lists(secret_specs(), max_size=4))
    kind = draw(st.sampled_from(["SecretList", "List"]))
    applied = [draw(st.booleans()) for _ in specs]
    items = [
        secret_object(s, kind=kind == "List", last_applied=a, string_data=False)
        for s, a in zip(specs, applied, strict=True)
    ]
    response = {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "9"}, "items": items}
    deleting = draw(st.booleans())
    event = audit_event(
        "secrets",
        "deletecollection" if deleting else "list",
        request=dict(_DELETE_OPTIONS) if deleting else None,
        response=response,
    )
    sources: list[str] = []
    for index, a in enumerate(applied):
        sources += [f"responseObject.items[{index}]"] + ([f"responseObject.items[{index}]{_LA}"] * a)
    plain = [s for s, a in zip(specs, applied, strict=True) if not a]  # stringData not sent
    return _planted(
        event,
        [s for s, a in zip(specs, applied, strict=True) if a]
        + [SecretSpec(s.name, s.namespace, s.data) for s in plain],
        sources=tuple(sources),
    )


@_shape
def _table_rows(draw: st.DrawFn) -> Planted:
    specs = draw(st.lists(secret_specs(), min_size=1, max_size=3))
    full = draw(st.booleans())  # includeObject=Object
    rows = []
    sources: list[str] = []
    for index, spec in enumerate(specs):
        obj = secret_object(spec, last_applied=True)
        path = f"responseObject.rows[{index}].object"
        if not full:
            obj = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        sources += [path, f"{path}{_LA}"] if full else [f"{path}{_LA}"]
        rows.append({"cells": [spec.name, "Opaque", len(spec.data), "32s"], "object": obj})
    event = audit_event("secrets", "get", response=_table(rows))
    return _planted(event, specs, sources=tuple(sources))


@_shape
def _watch_events(draw: st.DrawFn) -> Planted:
    specs = draw(st.lists(secret_specs(), min_size=1, max_size=3))
    types = st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK"])
    events = [{"type": draw(types), "object": secret_object(s)} for s in specs]
    form = draw(st.sampled_from(["one", "WatchEvent", "List", "array"]))
    response: Any
    sources: tuple[str, ...]
    if form in ("one", "WatchEvent"):
        specs, response = specs[:1], dict(events[0])
        sources = ("responseObject.object",)
        if form == "WatchEvent":
            response.update(kind="WatchEvent", apiVersion="meta.k8s.io/v1")
    elif form == "List":
        response = {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": events}
        sources = tuple(f"responseObject.items[{i}].object" for i in range(len(events)))
    else:
        response = events
        sources = tuple(f"responseObject[{i}].object" for i in range(len(events)))
    event = audit_event("secrets", "watch", response=response, query="?watch=true")
    return _planted(event, specs, sources=sources)


@_shape
def _json_patch(draw: st.DrawFn) -> Planted:
    spec, extra = draw(secret_specs()), draw(secret_specs())
    odd, stray = draw(_texts), draw(_texts)
    key, value = next(iter(spec.data.items()))
    applied = _last_applied(_manifest(extra, "Opaque"))
    pointer = "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration"
    ops: list[dict[str, Any]] = [
        *({"op": "add", "path": f"/data/{k}", "value": b64(v)} for k, v in spec.data.items()),
        *({"op": "replace", "path": f"/stringData/{k}", "value": v} for k, v in spec.string_data.items()),
        {"op": "test", "path": f"/data/{key}", "value": b64(value)},
        {"op": "add", "path": "/data", "value": {k: b64(v) for k, v in extra.data.items()}},
        {"op": "replace", "path": "", "value": secret_object(extra)},
        {"op": "add", "path": pointer, "value": applied},
        {
            "op": "add",
            "path": "/metadata/annotations",
            "value": {LAST_APPLIED: applied},
        },
        {"op": "add", "path": "/spec/unknown", "value": odd},
        {"op": "add", "path": "data/no-leading-slash", "value": stray},
        {"op": "replace", "path": "/metadata", "value": {"annotations": {LAST_APPLIED: applied}}},
        {"op": "copy", "from": f"/data/{key}", "path": "/data/copy"},
        {"op": "move", "from": f"/data/{key}", "path": "/data/moved"},
        {"op": "remove", "path": "/data/old"},
        {"op": "replace", "path": "/metadata/labels/tier", "value": "db"},
    ]
    ops = draw(st.permutations(ops))
    sources: list[str] = []
    for index, op in enumerate(ops):
        if op["path"] in ("", pointer):
            sources.append(f"requestObject[{index}].value")
        elif op["path"] == "/metadata/annotations":
            sources.append(f"requestObject[{index}].value.last-applied-configuration")
        elif op["path"] == "/metadata":
            sources.append(f"requestObject[{index}].value.annotations.last-applied-configuration")
    event = audit_event("secrets", "patch", request=ops, response=secret_object(spec, string_data=False))
    return _planted(
        event,
        [spec, extra],
        values=(odd, stray),
        fingerprinted=(odd.encode(), stray.encode()),
        sources=(*sources, "responseObject"),
    )


@_shape
def _merge_patch(draw: st.DrawFn) -> Planted:
    spec = draw(secret_specs())
    strategic = draw(st.booleans())
    data: dict[str, Any] = {k: b64(v) for k, v in spec.data.items()} | {"gone": None}
    body: dict[str, Any] = {
        "data": ({"$patch": "replace"} | data) if strategic else data,
        "metadata": {
            "annotations": {LAST_APPLIED: _last_applied(_manifest(spec, "Opaque"))},
            "labels": {"tier": "db"},
        },
    }
    if spec.string_data:
        body["stringData"] = dict(spec.string_data)
    if strategic:
        body |= {"$retainKeys": ["data", "stringData", "type"], "$patch": "merge"}
    event = audit_event("secrets", "patch", request=body, response=secret_object(spec, string_data=False))
    sources = ("requestObject", f"requestObject{_LA}", "responseObject")
    return _planted(event, [spec], sources=sources)


@_shape
def _docker_registry(draw: st.DrawFn) -> Planted:
    password, user = draw(_texts), draw(_names)
    auth = {"username": user, "password": password, "auth": b64(f"{user}:{password}")}
    config = json.dumps({"auths": {"registry.example.test": auth}})
    spec = SecretSpec(name=draw(_names), namespace="shop", data={".dockerconfigjson": config})
    obj = secret_object(spec, type_="kubernetes.io/dockerconfigjson")
    event = audit_event("secrets", "create", request=obj, response=obj)
    return _planted(event, [spec], values=(password,), sources=("requestObject", "responseObject"))


@_shape
def _service_account_token(draw: st.DrawFn) -> Planted:
    token = draw(_texts)
    spec = SecretSpec(name="builder-token", namespace="shop", data={"token": token, "ca.crt": ca_pem()})
    obj = secret_object(spec, type_="kubernetes.io/service-account-token")
    obj["data"]["namespace"] = b64("shop")
    obj["metadata"]["annotations"] = {"kubernetes.io/service-account.name": "builder"}
    event = audit_event("secrets", "get", response=obj)
    return _planted(event, [spec], fingerprinted=(b"shop",), sources=("responseObject",))


@_shape
def _embedded_in_other_resource(draw: st.DrawFn) -> Planted:
    spec, inner = draw(secret_specs()), draw(secret_specs())
    configmap = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm"}, "data": {"k": "v"}}
    ingress = {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {
            "name": "web",
            "annotations": {LAST_APPLIED: _last_applied({"kind": "List", "items": [secret_object(inner)]})},
        },
        "spec": {"tls": [{"secretName": "shop-tls"}]},
    }
    body = {
        "kind": "List",
        "apiVersion": "v1",
        "items": [configmap, secret_object(spec, last_applied=True), ingress],
    }
    resource = draw(st.sampled_from(["configmaps", "ingresses", None]))
    event = audit_event(resource, "create", request=body, response=body)
    sources = [
        f"{side}{path}"
        for side in ("requestObject", "responseObject")
        for path in (".items[1]", f".items[1]{_LA}", f".items[2]{_LA}.items[0]")
    ]
    return _planted(event, [spec, inner], sources=tuple(sources))


@_shape
def _token_request(draw: st.DrawFn) -> Planted:
    token = draw(_texts)
    request = {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "spec": {"audiences": ["api"]},
    }
    response = request | {"status": {"token": token, "expirationTimestamp": "2026-11-24T14:31:00Z"}}
    review = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "spec": {"token": token}}
    resource, req, resp = draw(
        st.sampled_from([("serviceaccounts", request, response), ("tokenreviews", review, review)])
    )
    event = audit_event(resource, "create", request=req, response=resp)
    return Planted(event=event, values=(token,), fingerprinted=(token.encode(),), sources=())


@_shape
def _value_copied_to_metadata(draw: st.DrawFn) -> Planted:
    spec = draw(secret_specs(string_data=False))
    key, value = next(iter(spec.data.items()))
    obj = secret_object(spec)
    if isinstance(value, str) and draw(st.booleans()):
        copied = draw(st.sampled_from([f"note: {value} end", value]))
    else:
        copied = b64(value)
    obj["metadata"]["annotations"] = {"copied": copied, "team": "shop"}
    obj["metadata"]["labels"]["copied"] = copied
    request = [{"op": "copy", "from": f"/data/{key}", "path": "/metadata/annotations/copied"}]
    event = audit_event("secrets", "patch", request=request, response=obj)
    return _planted(event, [spec], sources=("responseObject",))


# Short values (fewer than 8 characters were missed) and the characters JSON and Go escape.
_short = st.text(alphabet='"\\<>&\u2028é€\n\t/', max_size=3).map(MARKER.__add__)
copied_values = st.one_of(_short, st.text(max_size=12).map(MARKER.__add__))


def go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it (kapp, Argo CD): HTML-safe escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def _escaped(value: str, how: str) -> str:
    if how == "json":
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if how == "ascii":
        return json.dumps(value)[1:-1]
    if how == "go":
        return go_json(value)[1:-1]
    return json.dumps(json.dumps(value)[1:-1])[1:-1]  # twice


def copied_secret(draw: Callable[[st.SearchStrategy[Any]], Any], spec: SecretSpec) -> dict[str, Any]:
    """A Secret whose values are copied into its annotations, labels and other metadata, in
    every form: raw, JSON-escaped, Go-escaped, twice escaped, base64, inside manifests."""
    obj = secret_object(spec)
    values = [v for v in spec.values if isinstance(v, str)]
    manifest = _manifest(spec, "Opaque")
    manifest["metadata"]["annotations"] = {LAST_APPLIED: _last_applied(manifest)}  # nested copy
    annotations: dict[str, Any] = {
        "kapp.k14s.io/original": draw(st.sampled_from([go_json, _last_applied]))(manifest),
        LAST_APPLIED: _last_applied(_manifest(spec, "Opaque")),
        "kapp.k14s.io/original-diff-md5": "58e0494c51d30eb3494f7c9198986bb9",
        "kubernetes.io/service-account.name": "builder",
    }
    for index, value in enumerate(values):
        how = draw(st.sampled_from(["raw", "json", "ascii", "go", "twice", "base64"]))
        text = b64(value) if how == "base64" else value if how == "raw" else _escaped(value, how)
        annotations[f"note-{index}"] = draw(st.sampled_from([text, f'{{"v": "{text}"}}', f"pin {text}."]))
    if values:
        annotations["cert-manager.io/issuer-name"] = f"issuer-{values[0]}"
        obj["metadata"]["labels"]["copied"] = values[-1]
        obj["metadata"]["finalizers"] = [f"example.test/{values[0]}"]
    obj["metadata"]["annotations"] = annotations
    return obj


@_shape
def _values_copied_in_any_form(draw: st.DrawFn) -> Planted:
    data = draw(st.dictionaries(_keys, copied_values, min_size=1, max_size=3))
    string_data = draw(st.dictionaries(_keys, copied_values, max_size=2))
    spec = SecretSpec(name=draw(_names), namespace="shop", data=dict(data), string_data=string_data)
    obj = copied_secret(draw, spec)
    form = draw(st.sampled_from(["create", "update", "merge-patch", "json-patch", "watch", "table", "list"]))
    request: Any = None
    response: Any = obj
    verb = {"merge-patch": "patch", "json-patch": "patch", "table": "get"}.get(form, form)
    if form in ("create", "update"):
        request = obj
    elif form == "merge-patch":
        request = {
            "metadata": {"annotations": obj["metadata"]["annotations"]},
            "stringData": spec.string_data,
        }
    elif form == "json-patch":
        request = [
            {"op": "add", "path": f"/metadata/annotations/{k.replace('/', '~1')}", "value": v}
            for k, v in obj["metadata"]["annotations"].items()
        ] + [{"op": "add", "path": f"/data/{k}", "value": b64(v)} for k, v in spec.data.items()]
        request += [
            {"op": "add", "path": "/metadata/labels/copied", "value": obj["metadata"]["labels"]["copied"]}
        ]
    elif form == "watch":
        response = {"type": "MODIFIED", "object": obj}
    elif form == "table":
        response = _table([{"cells": [spec.name, "Opaque", len(spec.data), "1s"], "object": obj}])
    else:
        response = {"kind": "SecretList", "apiVersion": "v1", "metadata": {}, "items": [obj]}
    event = audit_event("secrets", verb, request=request, response=response)
    return Planted(event=event, values=spec.values, fingerprinted=())


@_shape
def _unrecognised(draw: st.DrawFn) -> Planted:
    spec, value = draw(secret_specs()), draw(_texts)
    form = draw(
        st.sampled_from(
            ["kind", "string", "list", "fields", "column", "cell", "patch-op", "unparseable", "message"]
        )
    )
    request: Any = None
    response: Any = None
    status = None
    dropped: tuple[str, ...] = ("responseObject",)
    fingerprinted = spec.raw
    if form == "kind":
        response = {"kind": "Weird", "payload": value, "nested": secret_object(spec)}
        fingerprinted = ()
    elif form == "string":
        request, response, dropped = value, secret_object(spec), ("requestObject",)
    elif form == "list":
        request, response, dropped = [value, {"x": value}], secret_object(spec), ("requestObject",)
    elif form == "fields":
        response = secret_object(spec) | {"spec": {"token": value}, "status": value}
        dropped = ("responseObject.spec", "responseObject.status")
    elif form == "column":
        row = {"cells": [spec.name, "Opaque", 1, "1s", value], "object": secret_object(spec)}
        response, fingerprinted = _table([row], (*_COLUMNS, "Value")), ()
    elif form == "cell":
        row = {"cells": [spec.name, "Opaque", value, "1s"], "object": secret_object(spec)}
        response, fingerprinted = _table([row]), ()
    elif form == "patch-op":
        request = [{"op": "add", "path": "/data/k", "value": b64(value), "note": value}]
        response, dropped = secret_object(spec), ("requestObject",)
    elif form == "unparseable":
        response = secret_object(spec)
        response["metadata"]["annotations"] = {LAST_APPLIED: '{"data": {"k": "' + value}
        dropped = (f"responseObject{_LA}",)
    else:
        response, dropped = secret_object(spec), ()
        status = {"status": "Failure", "reason": "BadRequest", "message": f"bad: {value}", "code": 400}
    event = audit_event("secrets", "patch", request=request, response=response, status=status)
    return Planted(
        event=event,
        values=(*spec.values, value),
        fingerprinted=fingerprinted,
        dropped=dropped,
    )
