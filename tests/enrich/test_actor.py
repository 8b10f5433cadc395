from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import find_event, make_event
from webhook.enrich.actor import Client, ServiceAccount, actor_of, classify, parse_user_agent
from webhook.errors import MalformedEventError


@pytest.mark.parametrize(
    ("username", "kind", "service_account", "node"),
    [
        ("admin", "user", None, None),
        ("alice@example.com", "user", None, None),
        (
            "system:serviceaccount:shop:builder",
            "service_account",
            ServiceAccount(namespace="shop", name="builder"),
            None,
        ),
        ("system:node:worker-1", "node", None, "worker-1"),
        ("system:anonymous", "anonymous", None, None),
        ("system:apiserver", "system", None, None),
        ("system:kube-controller-manager", "system", None, None),
        ("system:serviceaccount:shop", "system", None, None),
        ("system:serviceaccount::builder", "system", None, None),
        ("system:node:", "node", None, None),
        ("", "unauthenticated", None, None),
        (None, "unauthenticated", None, None),
    ],
)
def test_classify(
    username: str | None, kind: str, service_account: ServiceAccount | None, node: str | None
) -> None:
    """The kind of caller follows from the Kubernetes username conventions."""
    assert classify(username) == (kind, service_account, node)


@pytest.mark.parametrize(
    ("user_agent", "client"),
    [
        ("kubectl/v1.26.0 (linux/amd64) kubernetes/b46a3f8", Client(name="kubectl", version="v1.26.0")),
        (
            "kube-apiserver/v1.26.0 (linux/amd64) kubernetes/b46a3f8",
            Client(name="kube-apiserver", version="v1.26.0"),
        ),
        ("Go-http-client/1.1", Client(name="Go-http-client", version="1.1")),
        ("curl", Client(name="curl", version=None)),
        ("helm/3.14 extra", Client(name="helm", version="3.14")),
        ("", None),
        (None, None),
        ("/no-name", None),
    ],
)
def test_parse_user_agent(user_agent: str | None, client: Client | None) -> None:
    """``name/version rest`` gives the client name and version; nothing usable gives None."""
    assert parse_user_agent(user_agent) == client


def test_user_agent_parts_are_bounded() -> None:
    """A hostile user agent cannot make the record huge."""
    client = parse_user_agent("x" * 10_000 + "/" + "9" * 10_000)
    assert client is not None
    assert len(client.name) <= 128
    assert client.version is not None
    assert len(client.version) <= 64


def test_captured_user() -> None:
    """A plain user (A05, admin with a static token) with its groups and client."""
    actor = actor_of(find_event("0009.json", stage="ResponseComplete", verb="create"))

    assert actor.user.username == "admin"
    assert actor.user.kind == "user"
    assert actor.user.groups == ("system:masters", "system:authenticated")
    assert actor.impersonated is None
    assert actor.effective is actor.user
    assert actor.source_ips == ("127.0.0.1",)
    assert actor.client == Client(name="kubectl", version="v1.26.0")


def test_captured_service_account() -> None:
    """The SA-token caller of A28 is the service account shop/builder."""
    actor = actor_of(find_event("0038.json", stage="ResponseComplete", verb="get"))

    assert actor.user.kind == "service_account"
    assert actor.user.service_account == ServiceAccount(namespace="shop", name="builder")
    assert "system:serviceaccounts:shop" in actor.user.groups
    assert actor.user.uid


def test_captured_unauthenticated() -> None:
    """The 401 of A23 has ``user: {}``: no name, no groups, kind unauthenticated."""
    actor = actor_of(find_event("0032.json", stage="ResponseStarted"))

    assert actor.user.username is None
    assert actor.user.groups == ()
    assert actor.user.kind == "unauthenticated"


def test_captured_impersonation() -> None:
    """A25: admin acting as alice with group dev; the request was authorized as alice."""
    actor = actor_of(find_event("0034.json", stage="ResponseComplete", verb="get"))

    assert actor.user.username == "admin"
    assert actor.impersonated is not None
    assert actor.impersonated.username == "alice"
    assert actor.impersonated.kind == "user"
    assert "dev" in actor.impersonated.groups
    assert actor.effective is actor.impersonated


def test_missing_user_agent_and_ips() -> None:
    """Absent optional fields become None / ()."""
    event = make_event()
    del event["userAgent"], event["sourceIPs"]

    actor = actor_of(event)

    assert (actor.user_agent, actor.client, actor.source_ips) == (None, None, ())


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"user": {"username": "admin", "groups": "system:masters"}}, "user.groups"),
        ({"user": {"username": ["admin"]}}, "user.username"),
        ({"user": {"username": "admin", "uid": 7}}, "user.uid"),
        ({"impersonatedUser": {"username": "alice", "groups": [1]}}, "impersonatedUser.groups"),
        ({"impersonatedUser": "alice"}, "impersonatedUser"),
        ({"sourceIPs": "127.0.0.1"}, "sourceIPs"),
        ({"userAgent": ["kubectl"]}, "userAgent"),
    ],
)
def test_wrong_types_name_the_field(change: dict[str, Any], path: str) -> None:
    """A field with the wrong type raises MalformedEventError naming its path."""
    with pytest.raises(MalformedEventError) as info:
        actor_of(make_event(**change))

    assert info.value.message.split()[0] == path
