from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import find_event, make_event
from webhook.core.patterns import Matcher
from webhook.filter import (
    DEFAULT_FILTER,
    FilterSpec,
    Rule,
    compile_filter,
    is_final_event,
)

keep_default = compile_filter(DEFAULT_FILTER)


def spec(*include: Rule, exclude: tuple[Rule, ...] = (), stages: Any = "final") -> FilterSpec:
    return FilterSpec(stages=stages, include=include, exclude=exclude)


@pytest.mark.parametrize(
    ("api_group", "resource", "namespace", "name"),
    [
        ("networking.k8s.io", "ingresses", "shop", "web"),
        ("networking.k8s.io", "ingressclasses", None, "nginx"),
        ("", "secrets", "shop", "db-creds"),
        ("gateway.networking.k8s.io", "gateways", "shop", "gw"),
        ("gateway.networking.k8s.io", "httproutes", "shop", "r"),
        ("gateway.networking.k8s.io", "grpcroutes", "shop", "r"),
        ("gateway.networking.k8s.io", "tlsroutes", "shop", "r"),
        ("gateway.networking.k8s.io", "tcproutes", "shop", "r"),
        ("gateway.networking.k8s.io", "referencegrants", "shop", "g"),
        ("", "configmaps", "kube-system", "coredns"),
    ],
)
def test_default_rules_keep_the_entry_points(
    api_group: str, resource: str, namespace: str | None, name: str
) -> None:
    """Everything the issue lists as an entry point is kept by the default rules."""
    event = make_event(api_group=api_group, resource=resource, namespace=namespace, name=name)
    assert keep_default(event)


@pytest.mark.parametrize(
    ("api_group", "resource", "namespace", "name"),
    [
        ("", "configmaps", "kube-system", "kube-proxy"),
        ("", "configmaps", "default", "coredns"),
        ("", "configmaps", None, "coredns"),
        ("example.com", "secrets", "shop", "db"),
        ("example.com", "ingresses", "shop", "web"),
        ("networking.k8s.io", "networkpolicies", "shop", "deny"),
        ("", "pods", "shop", "web-0"),
        ("coordination.k8s.io", "leases", "kube-system", "kube-apiserver-x"),
        ("rbac.authorization.k8s.io", "rolebindings", "shop", "dev"),
    ],
)
def test_default_rules_drop_everything_else(
    api_group: str, resource: str, namespace: str | None, name: str
) -> None:
    """Same shape, other resource/group/namespace/name: no record."""
    event = make_event(api_group=api_group, resource=resource, namespace=namespace, name=name)
    assert not keep_default(event)


@pytest.mark.parametrize("code", [401, 403])
def test_auth_failures_are_kept_whatever_the_resource(code: int) -> None:
    """401 and 403 are kept on any resource, and on non-resource URLs."""
    pods = make_event(api_group="", resource="pods", code=code)
    discovery = make_event(resource=None, verb="get", code=code, requestURI="/apis")
    assert keep_default(pods)
    assert keep_default(discovery)
    assert not keep_default(make_event(api_group="", resource="pods", code=404))


def test_final_stage_only_by_default() -> None:
    """One record per request: RequestReceived and a watch's ResponseStarted are not final."""
    assert not keep_default(make_event(stage="RequestReceived"))
    assert not keep_default(make_event(stage="ResponseStarted", verb="watch", code=200))
    assert keep_default(make_event(stage="ResponseComplete"))
    assert keep_default(make_event(stage="Panic", code=500))


def test_a_401_is_final_at_response_started() -> None:
    """The captured 401 (A23) has only a ResponseStarted event with ``user: {}``; it is final."""
    event = find_event("0032.json", stage="ResponseStarted", verb="list")
    assert event["user"] == {}
    assert is_final_event(event)
    assert keep_default(event)


def test_a_watch_is_final_at_response_complete() -> None:
    """The captured watch (A18): its ResponseStarted is not final, its ResponseComplete is."""
    started = find_event("0025.json", stage="ResponseStarted", verb="watch")
    complete = find_event("0026.json", stage="ResponseComplete", verb="watch")
    assert started["auditID"] == complete["auditID"]
    assert not is_final_event(started)
    assert is_final_event(complete)


def test_custom_stage_list() -> None:
    """A stage list replaces "final": exactly those stages are kept."""
    keep = compile_filter(
        spec(Rule(resources=frozenset({"ingresses"})), stages=frozenset({"RequestReceived"}))
    )
    assert keep(make_event(stage="RequestReceived"))
    assert not keep(make_event(stage="ResponseComplete"))
    assert not keep(make_event(stage="ResponseStarted", username=None, code=401))


def test_rule_stages_narrow_within_the_selected_stages() -> None:
    """A rule's own ``stages`` further restricts which events it matches."""
    keep = compile_filter(
        spec(
            Rule(resources=frozenset({"ingresses"}), stages=frozenset({"Panic"})),
            stages=frozenset({"ResponseComplete", "Panic"}),
        )
    )
    assert keep(make_event(stage="Panic", code=500))
    assert not keep(make_event(stage="ResponseComplete"))


def test_every_field_of_a_rule_must_match() -> None:
    """A rule is an AND of the fields it sets; an unset field matches anything."""
    rule = Rule(
        api_groups=frozenset({"networking.k8s.io"}),
        resources=frozenset({"ingresses"}),
        verbs=frozenset({"patch"}),
        namespaces=Matcher(("shop",)),
        codes=frozenset({200}),
    )
    keep = compile_filter(spec(rule))
    assert keep(make_event(verb="patch", code=200))
    assert not keep(make_event(verb="update", code=200))
    assert not keep(make_event(verb="patch", code=201))
    assert not keep(make_event(verb="patch", code=200, namespace="other"))
    assert not keep(make_event(verb="patch", code=200, api_group="extensions"))


def test_globs_in_namespaces_names_and_users() -> None:
    """Namespaces, names and users take shell patterns as well as exact strings."""
    keep = compile_filter(
        spec(
            Rule(
                resources=frozenset({"secrets"}),
                namespaces=Matcher(("team-*", "shop")),
                names=Matcher(("db-?", "[ab]*")),
                users=Matcher(("system:serviceaccount:ci:*",)),
            )
        )
    )
    user = "system:serviceaccount:ci:deployer"
    secret: dict[str, Any] = {"api_group": "", "resource": "secrets", "username": user}
    assert keep(make_event(namespace="team-a", name="db-1", **secret))
    assert keep(make_event(namespace="shop", name="api-keys", **secret))
    assert keep(make_event(namespace="shop", name="b", **secret))
    assert not keep(make_event(namespace="team", name="db-1", **secret))
    assert not keep(make_event(namespace="shop", name="db-10", **secret))
    assert not keep(make_event(namespace="shop", name="cache", **secret))
    assert not keep(make_event(namespace="shop", name="db-1", api_group="", resource="secrets"))


def test_user_groups_match_any_group_of_the_caller() -> None:
    """``user_groups`` matches when any of the caller's groups matches."""
    keep = compile_filter(spec(Rule(user_groups=Matcher(("dev", "ops-*")))))
    assert keep(make_event(groups=("system:authenticated", "dev")))
    assert keep(make_event(groups=("ops-oncall",)))
    assert not keep(make_event(groups=("system:authenticated",)))
    assert not keep(make_event(groups=()))


def test_users_are_the_authenticated_caller_not_the_impersonated_one() -> None:
    """Impersonating an excluded user does not move a request out of the rules."""
    keep = compile_filter(
        spec(Rule(resources=frozenset({"ingresses"})), exclude=(Rule(users=Matcher(("alice",))),))
    )
    impersonating = make_event(impersonatedUser={"username": "alice", "groups": ["dev"]})
    assert keep(impersonating)
    assert not keep(make_event(username="alice"))


def test_subresource_empty_string_means_none() -> None:
    """``subresources: [""]`` selects the object itself, not its status."""
    keep = compile_filter(spec(Rule(resources=frozenset({"ingresses"}), subresources=frozenset({""}))))
    status = make_event()
    status["objectRef"]["subresource"] = "status"
    assert keep(make_event())
    assert not keep(status)


def test_core_group_is_the_empty_string() -> None:
    """``api_groups: [""]`` is the core group, whose objectRef has no apiGroup key."""
    keep = compile_filter(spec(Rule(api_groups=frozenset({""}))))
    event = make_event(api_group="", resource="secrets")
    assert "apiGroup" not in event["objectRef"]
    assert keep(event)
    assert not keep(make_event())


def test_exclude_wins_over_include() -> None:
    """An event matching an include and an exclude rule is dropped."""
    nginx = "system:serviceaccount:ingress-nginx:ingress-nginx"
    keep = compile_filter(
        spec(
            *DEFAULT_FILTER.include,
            exclude=(Rule(users=Matcher((nginx,)), subresources=frozenset({"status"})),),
        )
    )
    status_update = make_event(verb="update", code=200, username=nginx)
    status_update["objectRef"]["subresource"] = "status"
    assert not keep(status_update)
    assert keep(make_event(verb="update", code=200, username=nginx))


def test_an_exclude_naming_a_resource_applies_to_that_resource_only() -> None:
    """``exclude: [{resources: [secrets], namespaces: [kube-system]}]`` drops just those."""
    keep = compile_filter(
        spec(
            *DEFAULT_FILTER.include,
            exclude=(Rule(resources=frozenset({"secrets"}), namespaces=Matcher(("kube-system",))),),
        )
    )
    assert not keep(make_event(api_group="", resource="secrets", namespace="kube-system"))
    assert keep(make_event(api_group="", resource="secrets", namespace="shop"))
    assert keep(make_event(namespace="kube-system"))


def test_a_generic_exclude_applies_to_indexed_resources() -> None:
    """An exclude rule that names no resource drops events of every resource."""
    keep = compile_filter(
        spec(*DEFAULT_FILTER.include, exclude=(Rule(users=Matcher(("system:apiserver",))),))
    )
    for resource, group in (("secrets", ""), ("ingressclasses", "networking.k8s.io"), ("pods", "")):
        event = make_event(api_group=group, resource=resource, username="system:apiserver", code=403)
        assert not keep(event), resource
    assert keep(make_event(api_group="", resource="secrets"))


def test_generic_and_indexed_includes_combine() -> None:
    """A 403 on a resource that has its own rule is kept by either; other codes only by it."""
    keep = compile_filter(
        spec(
            Rule(resources=frozenset({"ingresses"}), verbs=frozenset({"create"})),
            Rule(codes=frozenset({403})),
        )
    )
    assert keep(make_event(verb="get", code=403))
    assert keep(make_event(verb="create", code=201))
    assert not keep(make_event(verb="get", code=200))


def test_no_include_rules_keeps_nothing() -> None:
    """An empty include list is a filter that keeps no event."""
    assert not compile_filter(spec())(make_event())


def test_a_rule_with_no_fields_matches_everything() -> None:
    """``Rule()`` is the catch-all."""
    keep = compile_filter(spec(Rule()))
    assert keep(make_event(api_group="", resource="pods", code=200))


def test_matcher() -> None:
    """Exact strings and globs; anything that is not a string never matches."""
    matcher = Matcher(("kube-*", "shop"))
    assert matcher("kube-system")
    assert matcher("shop")
    assert not matcher("shopping")
    assert not matcher(None)
    assert not matcher(["shop"])
    assert matcher.any_of(["a", "shop"])
    assert not matcher.any_of("shop")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
ALL_FIELDS = Rule(
    api_groups=frozenset({""}),
    resources=frozenset({"secrets"}),
    subresources=frozenset({""}),
    namespaces=Matcher(("shop",)),
    names=Matcher(("db-*",)),
    verbs=frozenset({"get"}),
    users=Matcher(("admin",)),
    user_groups=Matcher(("dev",)),
    stages=frozenset({"ResponseComplete"}),
    codes=frozenset({200}),
)
FILTERS = [
    compile_filter(DEFAULT_FILTER),
    compile_filter(spec(ALL_FIELDS, Rule(codes=frozenset({403})), exclude=(ALL_FIELDS,))),
    compile_filter(spec(ALL_FIELDS, stages=frozenset({"ResponseComplete"}))),
]


@given(
    stage=json_values | st.sampled_from(["ResponseComplete", "ResponseStarted"]),
    verb=json_values,
    user=json_values | st.fixed_dictionaries({"username": json_values, "groups": json_values}),
    object_ref=json_values
    | st.fixed_dictionaries(
        {
            "resource": json_values | st.just("secrets"),
            "apiGroup": json_values,
            "subresource": json_values,
            "namespace": json_values,
            "name": json_values,
        }
    ),
    status=json_values | st.fixed_dictionaries({"code": json_values}),
)
def test_the_predicate_never_raises(stage: Any, verb: Any, user: Any, object_ref: Any, status: Any) -> None:
    """Any field may have any JSON type: the predicate answers, it does not raise."""
    event = {"stage": stage, "verb": verb, "user": user, "objectRef": object_ref, "responseStatus": status}
    for keep in FILTERS:
        assert keep(event) in (True, False)
