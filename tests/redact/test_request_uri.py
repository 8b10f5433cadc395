"""Sensitive query values in a record's ``request_uri``: replaced, their names kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import event_list, make_config, make_event, records_in, settle
from webhook.redact.request_uri import MARKER, redact_request_uri
from webhook.server.app import create_app

JSON = {"Content-Type": "application/json"}
SECRET = "RT-SECRET-43-xyz"
EXEC = (
    "/api/v1/namespaces/db/pods/mysql-0/exec?command=sh&command=-c"
    f"&command=mysql+-uroot+-p{SECRET}&container=mysql&stdin=true&stdout=true&tty=true"
)


@pytest.mark.parametrize(
    ("uri", "subresource", "expected"),
    [
        (
            EXEC,
            "exec",
            "/api/v1/namespaces/db/pods/mysql-0/exec?command=<redacted>&command=<redacted>"
            "&command=<redacted>&container=mysql&stdin=true&stdout=true&tty=true",
        ),
        (EXEC, None, redact_request_uri(EXEC, "exec")),  # known by its path too
        (
            "/api/v1/namespaces/db/pods/mysql-0/attach?container=mysql&stdin=true",
            "attach",
            "/api/v1/namespaces/db/pods/mysql-0/attach?container=mysql&stdin=true",
        ),
        (
            "/api/v1/namespaces/db/pods/mysql-0/portforward?ports=3306&x=1",
            "portforward",
            "/api/v1/namespaces/db/pods/mysql-0/portforward?ports=3306&x=<redacted>",
        ),
        (
            "/api/v1/namespaces/m/services/grafana:3000/proxy/api/login?user=admin&password=pw",
            "proxy",
            "/api/v1/namespaces/m/services/grafana:3000/proxy/api/login?user=<redacted>&password=<redacted>",
        ),
        (
            "/apis/networking.k8s.io/v1/ingresses?access_token=abc&limit=500&Api-Key=k&client_secret=s",
            None,
            "/apis/networking.k8s.io/v1/ingresses?access_token=<redacted>&limit=500&Api-Key=<redacted>"
            "&client_secret=<redacted>",
        ),
        (
            "/api/v1/namespaces/shop/secrets?fieldManager=kubectl&dryRun=All&token",
            None,
            "/api/v1/namespaces/shop/secrets?fieldManager=kubectl&dryRun=All&token",
        ),
        ("/api/v1/pods?%74oken=abc", None, "/api/v1/pods?%74oken=<redacted>"),  # percent-encoded name
        ("/api/v1/pods", None, "/api/v1/pods"),
        ("/api/v1/pods?", None, "/api/v1/pods?"),
    ],
)
def test_redact_request_uri(uri: str, subresource: str | None, expected: str) -> None:
    """A10: exec/attach/portforward/proxy values and credential-named values are replaced."""
    assert redact_request_uri(uri, subresource) == expected


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(st.sampled_from(["command", "token", "password", "x-secret", "key", "sig"]), min_size=1),
    value=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-+%", min_size=1).map("s3cr3t".__add__),
)
def test_no_value_survives_on_exec(names: list[str], value: str) -> None:
    """Whatever the parameters of an exec, none of their values is kept."""
    uri = "/api/v1/namespaces/a/pods/b/exec?" + "&".join(f"{n}={value}" for n in names)
    assert "s3cr3t" not in redact_request_uri(uri, "exec")
    assert redact_request_uri(uri, "exec").count(MARKER) == len(names)


async def test_exec_command_never_reaches_the_records(aiohttp_client: Any, tmp_path: Path) -> None:
    """A10 (S1 case 43): a refused exec whose command line holds a password is recorded
    (the default rules keep 403s) with the command's values replaced."""
    config = make_config(tmp_path)
    client = await aiohttp_client(create_app(config))
    event = make_event(
        verb="create",
        api_group="",
        resource="pods",
        namespace="db",
        name="mysql-0",
        code=403,
        username="eve",
        requestURI=EXEC,
    )
    event["objectRef"]["subresource"] = "exec"

    resp = await client.post("/audit?timeout=30s", data=event_list(event), headers=JSON)
    assert resp.status == 200
    await settle(client)

    (record,) = records_in(config)
    assert record["request_uri"] == redact_request_uri(EXEC, "exec")
    assert SECRET not in (config.data_dir / "records.jsonl").read_text()
    spooled = b"".join(p.read_bytes() for p in (config.data_dir / "spool").glob("*.seg"))
    assert SECRET.encode() not in spooled
