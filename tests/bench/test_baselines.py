"""The baseline servers the bench compares ingress-audit with, each in its own process on loopback."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import orjson
import pytest

from bench.baselines import KINDS, BaselineProcess, Kind
from tests.conftest import event_list, make_event

BODY = event_list(*(make_event() for _ in range(3)))


@pytest.fixture(params=KINDS)
def baseline(request: pytest.FixtureRequest) -> Iterator[BaselineProcess]:
    kind: Kind = request.param
    server = BaselineProcess(kind)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _request(server: BaselineProcess, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_baseline_answers_an_event_list_with_200_and_json(baseline: BaselineProcess) -> None:
    """POST /audit (with the apiserver's query string) is answered 200 with a small JSON body."""
    status, body = _request(baseline, "POST", "/audit?timeout=30s", BODY)

    assert status == 200
    assert isinstance(orjson.loads(body), dict)
    assert len(body) < 64


def test_a_baseline_answers_the_senders_warm_up(baseline: BaselineProcess) -> None:
    """GET /healthz is answered 200: the senders open their connections with it."""
    assert _request(baseline, "GET", "/healthz")[0] == 200


def test_a_baseline_keeps_the_connection_open(baseline: BaselineProcess) -> None:
    """Several requests go over one connection, as the apiserver's and the bench's clients send them."""
    conn = http.client.HTTPConnection("127.0.0.1", baseline.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("POST", "/audit", body=BODY, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            assert not response.will_close
    finally:
        conn.close()


def test_a_baseline_exits_cleanly_on_sigterm(baseline: BaselineProcess) -> None:
    """SIGTERM ends it with status 0, so that a crash under load can be told from the stop."""
    _request(baseline, "POST", "/audit", BODY)

    assert baseline.stop() == 0


def test_the_naive_server_parses_the_body() -> None:
    """The naive server counts the items it decoded; a body that is not JSON gets a 400."""
    server = BaselineProcess("naive")
    server.start()
    try:
        assert orjson.loads(_request(server, "POST", "/audit", BODY)[1]) == {"accepted": 3}
        assert _request(server, "POST", "/audit", b"{not json")[0] == 400
    finally:
        server.stop()


def test_the_null_server_does_not_parse_the_body() -> None:
    """The null server answers 200 whatever the body holds: it reads it and nothing else."""
    server = BaselineProcess("null")
    server.start()
    try:
        assert _request(server, "POST", "/audit", b"{not json")[0] == 200
    finally:
        server.stop()
