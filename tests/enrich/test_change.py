"""Diffs, baselines, out-of-order and late events, and the summaries they come with."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_event
from webhook.enrich.change import (
    ChangeOptions,
    compute_change,
    observe,
    referenced_secret_keys,
    request_flags,
)
from webhook.enrich.diff import compile_ignore, diff_objects, pointer
from webhook.enrich.dns import corefile_change
from webhook.enrich.gateway import (
    gateway_summary,
    ingress_class_summary,
    reference_grant_summary,
    route_summary,
)
from webhook.enrich.settings import DEFAULT_IGNORE_PATHS
from webhook.state import StoredObject

OPTIONS = ChangeOptions(ignored=compile_ignore(DEFAULT_IGNORE_PATHS), max_value_bytes=64, max_operations=5)


def ingress(rv: str, host: str = "shop.example.test", **meta: Any) -> dict[str, Any]:
    return {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv, **meta},
        "spec": {"rules": [{"host": host}]},
    }


def write(
    verb: str, obj: dict[str, Any] | None, *, when: str = "2026-11-24T14:20:40Z", **extra: Any
) -> dict[str, Any]:
    extra.setdefault("code", 201 if verb == "create" else 200)
    event = make_event(verb=verb, stageTimestamp=when, **extra)
    if obj is not None:
        event["responseObject"] = obj
    return event


def stored(obj: dict[str, Any] | None, rv: str | None, when: str = "2026-11-24T14:20:00Z") -> StoredObject:
    return StoredObject(object=obj, resource_version=rv, audit_id="earlier", time=when)


def test_pointer_escapes() -> None:
    """RFC 6901: ~ and / inside a key are escaped."""
    assert pointer(("metadata", "annotations", "a~b/c")) == "/metadata/annotations/a~0b~1c"


def test_noise_is_ignored_and_large_values_are_cut() -> None:
    """resourceVersion, managedFields, status are left out; long values end in … and say so."""
    old = ingress("1", managedFields=[{"x": 1}])
    new = copy.deepcopy(ingress("2", managedFields=[{"x": 2}]))
    new["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
    new["metadata"]["annotations"] = {"note": "x" * 100}
    ops, omitted = diff_objects(old, new, ignored=OPTIONS.ignored, max_value_bytes=64)
    assert [(o.op, o.path, o.truncated) for o in ops] == [("add", "/metadata/annotations", True)]
    assert str(ops[0].new).endswith("…")
    assert omitted == 0


def test_too_many_operations_are_counted() -> None:
    """Beyond max_operations the rest are counted in omitted_operations."""
    old = {"a": {str(i): i for i in range(8)}}
    new = {"a": {str(i): -i - 1 for i in range(8)}}
    ops, omitted = diff_objects(old, new, ignored=OPTIONS.ignored, max_operations=5)
    assert (len(ops), omitted) == (5, 3)


def test_lists_compare_by_position_and_remove_from_the_end() -> None:
    """Removed tail items are listed from the last, so the ops apply in order."""
    ops, _ = diff_objects({"l": [1, 2, 3]}, {"l": [1]}, ignored=OPTIONS.ignored)
    assert [(o.op, o.path) for o in ops] == [("remove", "/l/2"), ("remove", "/l/1")]


def test_create_has_no_baseline_and_update_diffs() -> None:
    """A create says baseline none; an update diffs against the stored object."""
    assert compute_change(write("create", ingress("1")), None, OPTIONS).baseline == "none"  # type: ignore[union-attr]
    change = compute_change(write("update", ingress("2", host="www")), stored(ingress("1"), "1"), OPTIONS)
    assert change is not None
    assert change.baseline == "state"
    assert [(o.op, o.path, o.old, o.new) for o in change.operations] == [
        ("replace", "/spec/rules/0/host", "shop.example.test", "www")
    ]


def test_update_without_state_says_baseline_none() -> None:
    """Nothing stored: no guess."""
    change = compute_change(write("update", ingress("2")), None, OPTIONS)
    assert change is not None
    assert (change.baseline, change.operations) == ("none", ())


def test_a_late_event_is_marked_not_diffed() -> None:
    """The store already holds a newer version: the older event is late, and does not overwrite."""
    newer = stored(ingress("9", host="new"), "9", when="2026-11-24T14:21:00Z")
    event = write("update", ingress("7", host="old"))
    change = compute_change(event, newer, OPTIONS)
    assert change is not None
    assert (change.baseline, change.baseline_resource_version) == ("late", "9")
    from webhook.state import is_newer

    (update,) = observe(event, newer).updates.values()
    assert not is_newer(update, newer)


def test_a_delete_shows_what_was_removed() -> None:
    """A delete's responseObject is a Status: the removed object comes from the store."""
    event = write("delete", {"kind": "Status", "status": "Success"})
    change = compute_change(event, stored(ingress("3"), "3"), OPTIONS)
    assert change is not None
    assert [(o.op, o.path) for o in change.operations] == [("remove", "/spec")]
    (tomb,) = observe(event, stored(ingress("3"), "3")).updates.values()
    assert (tomb.deleted, tomb.object) == (True, None)


def test_failures_and_dry_runs_move_no_state() -> None:
    """A 403 or a dry run says nothing about the stored object."""
    assert observe(write("update", ingress("2"), code=403)).updates == {}
    dry = write(
        "update",
        ingress("2"),
        requestURI="/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web?dryRun=All",
    )
    assert observe(dry).updates == {}


def test_list_responses_refresh_every_item() -> None:
    """get/list/watch responses are baselines too; a list's items lack kind and carry names."""
    event = make_event(verb="list", code=200, name=None)
    event["responseObject"] = {
        "kind": "IngressList",
        "items": [
            ingress("4"),
            {**ingress("5"), "metadata": {"name": "b", "namespace": "shop", "resourceVersion": "5"}},
        ],
    }
    assert sorted(observe(event).updates) == [
        "networking.k8s.io/ingresses/shop/b",
        "networking.k8s.io/ingresses/shop/web",
    ]


def test_corefile_changes_are_named() -> None:
    """forward, rewrite, hosts and stub domains are named; unchanged lines are not."""
    old = ".:53 {\n  forward . /etc/resolv.conf\n}\n"
    new = ".:53 {\n  forward . 203.0.113.53\n  hosts {\n  }\n}\ncorp.example:53 {\n  forward . 10.0.0.53\n}\n"
    change = corefile_change(old, new)
    assert change is not None
    assert {(d.directive, d.change, d.server) for d in change.directives} == {
        ("forward", "removed", ".:53"),
        ("forward", "added", ".:53"),
        ("hosts", "added", ".:53"),
        ("stub_domain", "added", "corp.example:53"),
        ("forward", "added", "corp.example:53"),
    }
    assert corefile_change(old, old) is None


def test_gateway_api_and_ingress_class_summaries() -> None:
    """Listeners, routes, grants and the default class, from the objects as the API shapes them."""
    gateway = gateway_summary(
        {
            "spec": {
                "gatewayClassName": "gc",
                "listeners": [
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": 443,
                        "hostname": "*.x.test",
                        "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": "t"}]},
                    }
                ],
            }
        }
    )
    assert (
        gateway.gateway_class,
        gateway.listeners[0].tls_mode,
        gateway.listeners[0].certificate_refs[0].name,
    ) == ("gc", "Terminate", "t")
    route = route_summary(
        {
            "kind": "GRPCRoute",
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "hostnames": ["a.test"],
                "rules": [{"backendRefs": [{"name": "svc", "port": 9000}]}],
            },
        }
    )
    assert (route.kind, route.parent_refs[0].name, route.backend_refs[0].port) == ("GRPCRoute", "gw", 9000)
    grant = reference_grant_summary(
        {
            "spec": {
                "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "a"}],
                "to": [{"group": "", "kind": "Service"}],
            }
        }
    )
    assert (grant.from_refs[0].namespace, grant.to_refs[0].kind) == ("a", "Service")
    ic = ingress_class_summary(
        {
            "metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {
                "controller": "k8s.io/ingress-nginx",
                "parameters": {"kind": "IngressParameters", "name": "p"},
            },
        }
    )
    assert (ic.is_default, ic.controller, ic.parameters and ic.parameters.name) == (
        True,
        "k8s.io/ingress-nginx",
        "p",
    )


@pytest.mark.parametrize("value", ["", "garbage", 3])
def test_summaries_are_lenient(value: Any) -> None:
    """Odd shapes are left out, not errors."""
    assert gateway_summary({"spec": {"listeners": value}}).listeners == ()
    assert route_summary({"spec": {"hostnames": value}}).hostnames == ()


def test_ignore_paths_match_prefixes_and_wildcards() -> None:
    """A path ignores everything below it; ``*`` matches one segment."""
    ignored = compile_ignore(["/status", "/spec/rules/*/host"])
    assert ignored(("status", "loadBalancer"))
    assert ignored(("spec", "rules", "3", "host"))
    assert not ignored(("spec", "rules", "3", "http"))
    assert not ignored(("statuses",))


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("Gateway", {"listeners": 5}),
        ("Gateway", {"listeners": True}),
        ("Gateway", {"listeners": [{"tls": {"certificateRefs": 5}}, 7]}),
        ("Ingress", {"tls": 5}),
        ("Ingress", {"tls": True}),
    ],
)
def test_referenced_secrets_of_a_request_with_wrong_types(kind: str, spec: dict[str, Any]) -> None:
    """A failed create is logged with its request as sent (review finding 2): wrong types refer
    to no Secret, they do not raise."""
    request = {"kind": kind, "apiVersion": "v1", "metadata": {"name": "x", "namespace": "shop"}, "spec": spec}
    event = make_event(code=422, requestObject=request)

    assert referenced_secret_keys(event) == []


def _flags_as_urlsplit_reads_them(uri: str) -> tuple[bool, str | None]:
    query = parse_qs(urlsplit(uri).query)
    return "All" in query.get("dryRun", ()), next(iter(query.get("fieldManager", ())), None)


@settings(max_examples=500)
@given(
    st.lists(
        st.sampled_from(
            [
                "/apis/x",
                "?",
                "&",
                "#",
                "=",
                "dryRun",
                "All",
                "fieldManager",
                "kubectl",
                "%20",
                " ",
                "\t",
                "\n",
                "//",
                ":",
            ]
        ),
        max_size=12,
    ).map("".join)
)
def test_request_flags_read_the_query_as_urlsplit_does(uri: str) -> None:
    try:
        expected = _flags_as_urlsplit_reads_them(uri)
    except ValueError:  # urlsplit refuses it (a bracket in a netloc): nothing to compare
        return
    assert request_flags(uri) == expected


def test_request_flags() -> None:
    uri = "/apis/networking.k8s.io/v1/namespaces/shop/ingresses?dryRun=All&fieldManager=kubectl-edit"
    assert request_flags(uri) == (True, "kubectl-edit")
    assert request_flags("/api/v1/secrets") == (False, None)
    assert request_flags("/api/v1/secrets#x?dryRun=All") == (False, None)  # a fragment, no query


def test_a_tls_secret_state_keeps_its_leaf_names_and_nothing_else_does() -> None:
    secret = {"kind": "Secret", "metadata": {"name": "tls", "namespace": "shop", "resourceVersion": "7"}}
    event = make_event(verb="create", api_group="", resource="secrets", name="tls", code=201)
    event["responseObject"] = secret
    sans = ("shop.example.test",)

    (state,) = observe(event, certificate_sans=sans).updates.values()
    assert state.certificate_sans == sans
    deleted = make_event(verb="delete", api_group="", resource="secrets", name="tls", code=200)
    (tomb,) = observe(deleted, state, certificate_sans=sans).updates.values()
    assert tomb.deleted
    assert tomb.certificate_sans is None
