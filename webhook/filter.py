"""Filter rules compiled once into one predicate over raw events.

The predicate runs on every event of every batch, most of which match nothing, so it is built
to say "no" early: rules are indexed by resource, the stage test comes first, and each rule is a
single closure that checks its cheapest fields first. It reads the event defensively (any field
may have the wrong type) and never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from webhook.core.patterns import Matcher

__all__ = [
    "DEFAULT_FILTER",
    "FilterSpec",
    "Predicate",
    "Rule",
    "compile_filter",
    "is_final_event",
]

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """All the fields a rule sets must match (AND); an unset field matches anything.

    ``api_groups`` uses ``""`` for the core group. ``subresources`` uses ``""`` for "no
    subresource". ``users`` and ``user_groups`` match the authenticated caller (``user``), not
    the identity it impersonates, so that impersonation cannot move an event out of a rule.
    """

    api_groups: frozenset[str] | None = None
    resources: frozenset[str] | None = None
    subresources: frozenset[str] | None = None
    namespaces: Matcher | None = None
    names: Matcher | None = None
    verbs: frozenset[str] | None = None
    users: Matcher | None = None
    user_groups: Matcher | None = None
    stages: frozenset[str] | None = None
    codes: frozenset[int] | None = None


StageSelection = Literal["final"] | frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class FilterSpec:
    """``stages="final"`` keeps one event per request: the last one the apiserver sends."""

    stages: StageSelection = "final"
    include: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()


def _names(*values: str) -> frozenset[str]:
    return frozenset(values)


DEFAULT_FILTER: Final = FilterSpec(
    stages="final",
    include=(
        Rule(api_groups=_names("networking.k8s.io"), resources=_names("ingresses", "ingressclasses")),
        Rule(api_groups=_names(""), resources=_names("secrets")),
        Rule(
            api_groups=_names("gateway.networking.k8s.io"),
            resources=_names(
                "gateways", "httproutes", "grpcroutes", "tlsroutes", "tcproutes", "referencegrants"
            ),
        ),
        Rule(
            api_groups=_names(""),
            resources=_names("configmaps"),
            namespaces=Matcher(("kube-system",)),
            names=Matcher(("coredns",)),
        ),
        Rule(codes=frozenset({401, 403})),
    ),
)


def is_final_event(event: dict[str, Any]) -> bool:
    """True for the last event the apiserver sends about a request.

    ``ResponseComplete`` and ``Panic`` end every request that got past authentication. A request
    that failed authentication (401) produces only a ``ResponseStarted`` event with an empty
    user; a watch's ``ResponseStarted`` is followed by a ``ResponseComplete`` later.
    """
    stage = event.get("stage")
    if stage == "ResponseComplete" or stage == "Panic":
        return True
    if stage != "ResponseStarted":
        return False
    status = event.get("responseStatus")
    if isinstance(status, dict) and status.get("code") == 401:
        return True
    user = event.get("user")
    return not (isinstance(user, dict) and user.get("username"))


def _in(value: object, allowed: frozenset[str]) -> bool:
    """Membership that cannot raise: a list or dict from a malformed event is unhashable."""
    return isinstance(value, str) and value in allowed


def _code(event: dict[str, Any]) -> object:
    status = event.get("responseStatus")
    return status.get("code") if isinstance(status, dict) else None


def _ref(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef")
    return ref if isinstance(ref, dict) else {}


def _user(event: dict[str, Any]) -> dict[str, Any]:
    user = event.get("user")
    return user if isinstance(user, dict) else {}


def _compile_rule(rule: Rule) -> Predicate:
    """One closure per rule; its checks run cheapest first and stop at the first miss."""
    checks: list[Predicate] = []
    if rule.codes is not None:
        codes = rule.codes
        checks.append(lambda e: isinstance(c := _code(e), int) and c in codes)
    if rule.verbs is not None:
        verbs = rule.verbs
        checks.append(lambda e: _in(e.get("verb"), verbs))
    if rule.stages is not None:
        stages = rule.stages
        checks.append(lambda e: _in(e.get("stage"), stages))
    if rule.resources is not None:
        resources = rule.resources
        checks.append(lambda e: _in(_ref(e).get("resource"), resources))
    if rule.api_groups is not None:
        groups = rule.api_groups
        checks.append(lambda e: _in(_ref(e).get("apiGroup", ""), groups))
    if rule.subresources is not None:
        subresources = rule.subresources
        checks.append(lambda e: _in(_ref(e).get("subresource", ""), subresources))
    if rule.namespaces is not None:
        namespaces = rule.namespaces
        checks.append(lambda e: namespaces(_ref(e).get("namespace")))
    if rule.names is not None:
        names = rule.names
        checks.append(lambda e: names(_ref(e).get("name")))
    if rule.users is not None:
        users = rule.users
        checks.append(lambda e: users(_user(e).get("username")))
    if rule.user_groups is not None:
        user_groups = rule.user_groups
        checks.append(lambda e: user_groups.any_of(_user(e).get("groups")))

    if not checks:
        return lambda e: True
    if len(checks) == 1:
        return checks[0]
    first, *rest = checks

    def matches(event: dict[str, Any]) -> bool:
        return first(event) and all(check(event) for check in rest)

    return matches


def _index(rules: Iterable[Rule]) -> tuple[dict[str, tuple[Predicate, ...]], tuple[Predicate, ...]]:
    """Rules that name resources go into a bucket per resource; the others into every bucket."""
    compiled = [(rule.resources, _compile_rule(rule)) for rule in rules]
    generic = tuple(test for resources, test in compiled if resources is None)
    by_resource: dict[str, list[Predicate]] = {}
    for resources, test in compiled:
        for resource in resources or ():
            by_resource.setdefault(resource, []).append(test)
    return {res: (*tests, *generic) for res, tests in by_resource.items()}, generic


def compile_filter(spec: FilterSpec) -> Predicate:
    """Build the predicate that decides whether an event becomes a record."""
    if spec.stages == "final":
        stage_ok: Predicate = is_final_event
    else:
        stages = spec.stages
        stage_ok = lambda e: _in(e.get("stage"), stages)  # noqa: E731
    include, include_generic = _index(spec.include)
    exclude, exclude_generic = _index(spec.exclude)

    def keep(event: dict[str, Any]) -> bool:
        # Plain loops, no generators: this runs on every event the apiserver sends.
        if not stage_ok(event):
            return False
        resource = _ref(event).get("resource")
        key = resource if isinstance(resource, str) else ""
        for test in include.get(key, include_generic):
            if test(event):
                break
        else:
            return False
        for test in exclude.get(key, exclude_generic):  # noqa: SIM110 - no generator here
            if test(event):
                return False
        return True

    return keep
