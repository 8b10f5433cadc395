"""Realistic EventLists, deterministic from a seed, built from the shapes of the real captures.

A busy cluster's audit stream is mostly kubelets, controllers and the scheduler reading and
updating pods, leases, configmaps, endpoints and events at Metadata level (~1 kB each); a few
percent are what the default rules keep (Ingress writes, Secrets with certificates, 401/403s,
Gateway routes), at RequestResponse level, with the occasional very large list response.

Unmatched events copy the key order and field shapes of a captured Metadata event of the same
verb; matched events are the captured ones themselves. Every auditID starts with an 8-byte
stamp (``STAMP``) that the sender replaces with a fresh number per send, so each sent event is
unique while the bodies stay pre-serialized.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import orjson

from bench.cluster import ACTIONS, Actor, actors, uid
from webhook.filter import DEFAULT_FILTER, compile_filter

__all__ = ["CAPTURES", "STAMP", "Body", "Captures", "Pool", "build_pool", "generate_events", "load_captures"]

Event = dict[str, Any]

# The real captures, kept in the repository (tests/fixtures/apiserver-v1.26/README.md).
CAPTURES: Final = Path(__file__).resolve().parents[1] / "tests/fixtures/apiserver-v1.26/scenario-a/captures"
STAMP: Final = b"@STAMP@@"
_STAMP_TEXT: Final = STAMP.decode()
_KEEP: Final = compile_filter(DEFAULT_FILTER)
_START: Final = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
_REF_KEYS: Final = ("resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion")
_NAMESPACES: Final = ("default", "shop", "payments", "search", "monitoring", "team-a", "team-b", "checkout")
_APPS: Final = ("web", "api", "worker", "cart", "redis", "postgres", "prometheus", "fluent-bit", "search")


@dataclass(frozen=True, slots=True)
class Captures:
    skeletons: dict[str, Event]  # verb -> a captured final Metadata event: key order and shapes
    watch_started: Event  # a captured watch ResponseStarted event
    matched: tuple[Event, ...]  # every captured event the default rules keep
    secret_list: Event  # A15's SecretList response, grown into the very large lists


def _capture_files(captures: Path) -> list[Path]:
    return sorted(p for p in captures.glob("[0-9][0-9][0-9][0-9].json"))


def load_captures(captures: Path = CAPTURES) -> Captures:
    """Read scenario A; fails with FileNotFoundError if ``shared/`` is not beside the repository."""
    files = _capture_files(captures)
    if not files:
        raise FileNotFoundError(f"no captures in {captures}")
    skeletons: dict[str, Event] = {}
    watch_started: Event | None = None
    matched: list[Event] = []
    secret_list: Event | None = None
    for path in files:
        for event in orjson.loads(path.read_bytes())["items"]:
            if _KEEP(event):
                matched.append(event)
                response = event.get("responseObject") or {}
                if response.get("kind") == "SecretList" and response.get("items"):
                    secret_list = event
            elif event["level"] == "Metadata" and "objectRef" in event and "annotations" in event:
                if event["stage"] == "ResponseComplete":
                    skeletons.setdefault(event["verb"], event)
                elif event["stage"] == "ResponseStarted" and event["verb"] == "watch":
                    watch_started = watch_started or event
    if watch_started is None or secret_list is None:
        raise ValueError(f"{captures}: expected a watch and a SecretList among the captures")
    return Captures(skeletons, watch_started, tuple(matched), secret_list)


def _time(offset_us: int) -> str:
    return (
        (_START + timedelta(microseconds=offset_us)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    )


def _object_name(rng: random.Random, resource: str, actor: Actor) -> str:
    app = rng.choice(_APPS)
    pod = f"{app}-{rng.getrandbits(36):09x}-{rng.getrandbits(20):05x}"
    if resource in ("pods", "serviceaccounts"):
        return pod if resource == "pods" else app
    if resource in ("leases", "nodes"):
        return actor.username.rsplit(":", 1)[-1] if actor.username.startswith("system:node:") else app
    if resource == "events":
        return f"{pod}.{rng.getrandbits(64):x}"
    if resource == "configmaps":
        return rng.choice(("kube-root-ca.crt", f"{app}-config", f"{app}-env"))
    return app


def _metadata_event(
    rng: random.Random, captures: Captures, callers: dict[str, list[Actor]], at_us: int
) -> Event:
    _, kind, verb, resource, group, sub, namespaced = rng.choices(ACTIONS, [a[0] for a in ACTIONS])[0]
    actor = rng.choice(callers[kind])
    stage = "ResponseStarted" if verb == "watch" and rng.random() < 0.5 else "ResponseComplete"
    skeleton = captures.watch_started if stage == "ResponseStarted" else captures.skeletons[verb]
    namespace = None
    if namespaced:
        node_lease = kind == "kubelet" and resource == "leases"
        namespace = "kube-node-lease" if node_lease else rng.choice(("kube-system", *_NAMESPACES))
    name = (
        None
        if verb in ("list", "watch") or (verb == "create" and not sub)
        else _object_name(rng, resource, actor)
    )
    if verb == "create" and sub:
        name = _object_name(rng, resource, actor)
    version = "v1"
    ref: dict[str, str] = {
        "resource": resource,
        "namespace": namespace or "",
        "name": name or "",
        "uid": uid(rng) if verb in ("update", "patch") else "",
        "apiGroup": group,
        "apiVersion": version,
        "resourceVersion": str(rng.randrange(10**6, 10**8)) if verb == "update" else "",
    }
    object_ref = {k: ref[k] for k in _REF_KEYS if ref[k]}
    if sub:
        object_ref["subresource"] = sub
    path = ("/api/v1" if not group else f"/apis/{group}/{version}") + (
        f"/namespaces/{namespace}" if namespace else ""
    )
    path += f"/{resource}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
    if verb == "list":
        path += "?limit=500&resourceVersion=0"
    elif verb == "watch":
        seconds = rng.randrange(300, 600)
        path += (
            f"?allowWatchBookmarks=true&resourceVersion={rng.randrange(10**6, 10**8)}"
            f"&timeout={seconds // 60}m{seconds % 60}s&timeoutSeconds={seconds}&watch=true"
        )
    code = {"create": 201}.get(verb, 200)
    status: dict[str, Any] = {"metadata": {}, "code": code}
    if verb == "update" and rng.random() < 0.02:
        status = {
            "metadata": {},
            "status": "Failure",
            "message": f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            "reason": "Conflict",
            "details": {"name": name, "kind": resource},
            "code": 409,
        }
    user: dict[str, Any] = {"username": actor.username}
    if actor.uid:
        user["uid"] = actor.uid
    user["groups"] = list(actor.groups)
    if actor.extra:
        user["extra"] = actor.extra
    source = (
        f"10.0.{int(actor.username[-3:]) // 200}.{int(actor.username[-3:]) % 200 + 20}"
        if kind == "kubelet"
        else "10.0.0.10"
    )
    fields = {
        "auditID": f"{_STAMP_TEXT}-{uid(rng)[9:]}",
        "stage": stage,
        "requestURI": path,
        "verb": verb,
        "user": user,
        "sourceIPs": [source],
        "userAgent": actor.agent,
        "objectRef": object_ref,
        "responseStatus": status,
        "requestReceivedTimestamp": _time(at_us),
        "stageTimestamp": _time(at_us + rng.randrange(300, 15_000)),
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": actor.reason,
        },
    }
    return {key: fields.get(key, value) for key, value in skeleton.items()}


def _matched_event(rng: random.Random, captures: Captures, at_us: int, large: bool) -> Event:
    event = copy.deepcopy(captures.secret_list if large else rng.choice(captures.matched))
    event["auditID"] = f"{_STAMP_TEXT}-{uid(rng)[9:]}"
    event["requestReceivedTimestamp"] = _time(at_us)
    event["stageTimestamp"] = _time(at_us + rng.randrange(500, 40_000))
    if large:  # a controller listing every Secret in the cluster: 0.2 to 2 MB
        event["requestURI"] = "/api/v1/secrets?limit=500"
        event["objectRef"].pop("namespace", None)
        response = event["responseObject"]
        seed_items = response["items"]
        target = int(200_000 * 10 ** rng.random())
        items: list[Any] = []
        size = 0
        while size < target:
            item = copy.deepcopy(seed_items[len(items) % len(seed_items)])
            item["metadata"]["name"] += f"-{len(items):04d}"
            item["metadata"]["namespace"] = rng.choice(_NAMESPACES)
            item["metadata"]["uid"] = uid(rng)
            items.append(item)
            size += len(orjson.dumps(item))
        response["items"] = items
    return event


def generate_events(
    count: int,
    *,
    seed: int,
    captures: Captures,
    matched_share: float = 0.05,
    large_every: int = 10_000,
    nodes: int = 120,
) -> list[Event]:
    """``count`` events in arrival order; about ``matched_share`` of them kept by the default rules.

    One event in ``large_every`` (0: none) is a SecretList of 0.2 to 2 MB.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible load, not security
    callers = actors(nodes)
    events = []
    at_us = 0
    for _ in range(count):
        at_us += rng.randrange(50, 300)
        if large_every and rng.random() < 1 / large_every:
            events.append(_matched_event(rng, captures, at_us, large=True))
        elif rng.random() < matched_share:
            events.append(_matched_event(rng, captures, at_us, large=False))
        else:
            events.append(_metadata_event(rng, captures, callers, at_us))
    return events


@dataclass(frozen=True, slots=True)
class Body:
    """One pre-serialized EventList, split at the auditID stamps; ``render`` fills them in."""

    parts: tuple[bytes, ...]
    events: int
    matched: int

    def render(self, stamp: int) -> bytes:
        return (b"%08x" % stamp).join(self.parts)

    @property
    def size(self) -> int:
        return sum(map(len, self.parts)) + 8 * (len(self.parts) - 1)


def _body(events: Sequence[Event]) -> Body:
    doc = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": list(events)}
    # Go's HTML-safe escaping, as the apiserver writes it; these occur only inside strings.
    data = orjson.dumps(doc).replace(b"&", b"\\u0026").replace(b"<", b"\\u003c").replace(b">", b"\\u003e")
    return Body(tuple((data + b"\n").split(STAMP)), len(events), sum(1 for e in events if _KEEP(e)))


@dataclass(frozen=True, slots=True)
class Pool:
    batches: tuple[Body, ...]  # batch mode: ``batch_size`` events per body
    singles: tuple[Body, ...]  # blocking mode: the same events, one per body

    @property
    def events(self) -> int:
        return sum(b.events for b in self.batches)

    @property
    def matched(self) -> int:
        return sum(b.matched for b in self.batches)


def build_pool(
    *, seed: int, batches: int, batch_size: int = 400, captures: Captures | None = None, **mix: Any
) -> Pool:
    """The bodies the senders cycle through (each send gets fresh auditIDs)."""
    events = generate_events(batches * batch_size, seed=seed, captures=captures or load_captures(), **mix)
    return Pool(
        batches=tuple(_body(events[i : i + batch_size]) for i in range(0, len(events), batch_size)),
        singles=tuple(_body([event]) for event in events),
    )
