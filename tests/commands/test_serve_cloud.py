"""``ingress-audit serve`` over real TLS with the clouds' routes on: Firehose and Pub/Sub post
to it as they would, beside an ``/audit`` that still asks for the apiserver's client
certificate and token.

The server runs as the console script; its records, dead letters and log are scanned for the
scenario's secret values once it has stopped.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from tests.conftest import captured_bodies, read_jsonl, scenario_secrets
from tests.pki import make_pki
from tests.servers import free_port, spawn, stop_process, wait_until
from tests.sources.cloud_apps import EKS_CLUSTER, FIREHOSE_KEY, GKE_CLUSTER, OTHER_KEY, write_key
from tests.sources.envelopes import cwl_message, firehose_body, gz, record, scenario_event_bytes
from tests.sources.gke_entries import final_events, log_entry, push_body
from tests.sources.push_tokens import AUDIENCE, PUSHER, bearer, token, write_jwks
from webhook.redact.leaks import scan

SCRIPT: Final = Path(sys.executable).parent / "ingress-audit"
BEARER_TOKEN: Final = "apiserver-token-8c2f4e6a1b3d5f7091"


def _config(root: Path, port: int) -> Path:
    pki = make_pki(root, BEARER_TOKEN)
    doc: dict[str, Any] = {
        "cluster": EKS_CLUSTER,
        "data_dir": str(root / "data"),
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "tls": {
                "cert_file": str(root / "tls.crt"),
                "key_file": str(root / "tls.key"),
                "client_ca_file": str(root / "client-ca.crt"),
            },
            "auth": {
                "bearer_token_files": [str(pki.token_file)],
                "client_subjects": ["kube-apiserver-audit"],
                "require": "all",
            },
        },
        "sources": {
            "firehose": {
                "access_keys": [
                    {"key_file": str(write_key(root / "firehose.key")), "clusters": [EKS_CLUSTER]}
                ]
            },
            "pubsub": {
                "audience": AUDIENCE,
                "service_accounts": [PUSHER],
                "jwks_file": str(write_jwks(root / "jwks.json", "key-a")),
                "clusters": [GKE_CLUSTER],
            },
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Https:
    """Requests to the server as a client that trusts its CA and has no client certificate,
    as Firehose and Pub/Sub are."""

    def __init__(self, port: int, ca_file: Path) -> None:
        self.port = port
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any], bytes]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        try:
            connection.request(
                "POST", path, body=body, headers={"Content-Type": "application/json", **headers}
            )
            resp = connection.getresponse()
            raw = resp.read()
            return resp.status, dict(resp.getheaders()), raw
        finally:
            connection.close()

    def healthy(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), 1) as raw,
            self.context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.recv(64).startswith(b"HTTP/1.1 200")
        return False


def test_firehose_and_pubsub_post_to_a_real_tls_server(tmp_path: Path) -> None:
    port = free_port()
    config = _config(tmp_path, port)
    proc = spawn([str(SCRIPT), "serve", "--config", str(config)], tmp_path)
    client = Https(port, tmp_path / "ca.crt")
    said: list[bytes] = []
    try:
        wait_until(client.healthy, 30, "ingress-audit serve", proc)

        # EKS: the scenario in one gzip'd request, twice (a retry), and a stray cluster
        records = [record(gz(cwl_message(scenario_event_bytes()[i : i + 50]))) for i in range(0, 1211, 50)]
        records.append(record(gz(cwl_message(scenario_event_bytes()[:5], cluster="staging"))))
        body = gzip.compress(firehose_body(records, request_id="req-1"))
        headers = {
            "Content-Encoding": "gzip",
            "X-Amz-Firehose-Request-Id": "req-1",
            "X-Amz-Firehose-Access-Key": FIREHOSE_KEY,
        }
        first = client.post("/firehose", body, headers)
        retry = client.post("/firehose", body, headers)
        refused = client.post("/firehose", body, {**headers, "X-Amz-Firehose-Access-Key": OTHER_KEY})

        # GKE: every request of the scenario, one push each, then a redelivery and a bad audience
        entries = [log_entry(n) for b in captured_bodies() for n in final_events(b.name)]
        pushes = [
            client.post(
                "/pubsub", push_body(e, message_id=str(n)), {"Authorization": bearer(token(now=time.time()))}
            )
            for n, e in enumerate(entries)
        ]
        kept = next(n for n, answer in enumerate(pushes) if orjson.loads(answer[2])["records"] == 1)
        redelivered = client.post(
            "/pubsub",
            push_body(entries[kept], message_id=str(kept)),
            {"Authorization": bearer(token(now=time.time()))},
        )
        wrong_audience = client.post(
            "/pubsub",
            push_body(entries[0]),
            {"Authorization": bearer(token(now=time.time(), aud="https://x.example"))},
        )
        # /audit still asks for the apiserver's certificate and token
        audit = client.post("/audit", b"{}", {"Authorization": f"Bearer {BEARER_TOKEN}"})
        said.extend(
            answer[2] for answer in [first, retry, refused, *pushes, redelivered, wrong_audience, audit]
        )
    finally:
        stop_process(proc, timeout_s=30)

    assert proc.returncode == 0
    assert (first[0], retry[0], refused[0]) == (200, 200, 401)
    assert set(orjson.loads(first[2])) == {"requestId", "timestamp"}
    assert orjson.loads(first[2])["requestId"] == "req-1"
    assert orjson.loads(refused[2])["errorMessage"].startswith("unauthenticated:")
    assert {status for status, _, _ in pushes} == {200}
    assert redelivered[0] == 200
    assert orjson.loads(redelivered[2])["duplicates"] == 1
    assert (wrong_audience[0], orjson.loads(wrong_audience[2])["error"]) == (401, "wrong-audience")
    assert audit[0] == 401

    data = tmp_path / "data"
    records_written = [r for r in read_jsonl(data / "records.jsonl") if r["type"] == "audit"]
    by_cluster = {c: [r for r in records_written if r["cluster"] == c] for c in (EKS_CLUSTER, GKE_CLUSTER)}
    assert len(by_cluster[EKS_CLUSTER]) > 30
    assert len(by_cluster[GKE_CLUSTER]) > 30
    assert len(records_written) == sum(map(len, by_cluster.values()))
    assert len({r["id"] for r in by_cluster[EKS_CLUSTER]}) == len(by_cluster[EKS_CLUSTER])
    letters = read_jsonl(data / "dead-letter.jsonl")
    assert [d["reason"] for d in letters] == ["cluster-not-allowed"] * 5

    answers = tmp_path / "answers"
    answers.write_bytes(b"\n".join(said))
    assert scan([data, tmp_path / "output", answers], scenario_secrets()) == []
    output = (tmp_path / "output").read_bytes()
    assert FIREHOSE_KEY.encode() not in output + answers.read_bytes()
    assert b'"cloud.received"' in output
    assert os.path.getsize(tmp_path / "output") > 0
