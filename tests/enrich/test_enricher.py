from __future__ import annotations

from typing import Any, Final

from tests.conftest import find_event, make_event
from webhook.enrich.enricher import Enricher
from webhook.enrich.settings import ActorsConfig, ChangeConfig, FindingsConfig
from webhook.redact.redactor import Redactor
from webhook.state.base import StoredObject

REDACTOR: Final = Redactor(b"test-fingerprint-key-0123456789ab")
ENRICHER: Final = Enricher(change=ChangeConfig(), actors=ActorsConfig(), findings=FindingsConfig())
INGRESS_KEY: Final = "networking.k8s.io/ingresses/shop/web"
TLS_KEY: Final = "/secrets/shop/shop-tls"


def _ingress(
    *, tls_secret: str | None = None, host: str = "shop.example.test", rv: str = "7"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]
                },
            }
        ]
    }
    if tls_secret is not None:
        spec["tls"] = [{"hosts": [host], "secretName": tls_secret}]
    return {
        "kind": "Ingress",
        "apiVersion": "networking.k8s.io/v1",
        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": rv},
        "spec": spec,
    }


def _write(verb: str = "create", **extra: Any) -> dict[str, Any]:
    code = 201 if verb == "create" else 200
    return make_event(verb=verb, code=code, level="RequestResponse", **extra)


def test_state_keys_name_the_object_and_its_tls_secrets() -> None:
    """The enricher says which stored states it reads: the Ingress's and its TLS Secret's."""
    event = _write(responseObject=_ingress(tls_secret="shop-tls"))

    assert ENRICHER.state_keys(event) == [INGRESS_KEY, TLS_KEY]
    assert ENRICHER.state_keys(make_event(verb="list", name=None)) == []


def test_one_call_gives_the_record_everything() -> None:
    """Actor with source trust, summaries, the change and its findings come from one call."""
    enricher = Enricher(
        change=ChangeConfig(), actors=ActorsConfig(trusted_cidrs=("10.0.0.0/8",)), findings=FindingsConfig()
    )
    event = _write(responseObject=_ingress(), requestURI="/apis/x?dryRun=&fieldManager=kubectl-create")

    enrichment = enricher.enrich(REDACTOR.redact(event), {})

    assert [(t.ip, t.trust) for t in enrichment.actor.source_ip_trust] == [("127.0.0.1", "untrusted")]
    assert enrichment.ingress is not None
    assert enrichment.ingress.hosts == ("shop.example.test",)
    assert enrichment.change is not None
    assert enrichment.change.baseline == "none"
    assert (enrichment.dry_run, enrichment.field_manager) == (False, "kubectl-create")
    ids = {f.id for f in enrichment.findings}
    assert {"untrusted-source-ip", "change-by-human", "ingress-without-tls"} <= ids
    assert set(enrichment.state_updates) == {INGRESS_KEY}


def test_the_previous_state_is_the_baseline() -> None:
    """An update is diffed against the state passed in, and is the next state itself."""
    before = StoredObject(
        object=_ingress(rv="6"), resource_version="6", audit_id="a0", time="2026-11-24T14:00:00Z"
    )
    event = _write(verb="update", responseObject=_ingress(host="www.shop.example.test"))

    enrichment = ENRICHER.enrich(REDACTOR.redact(event), {INGRESS_KEY: before})

    assert enrichment.change is not None
    assert enrichment.change.baseline == "state"
    assert ("replace", "/spec/rules/0/host") in {(op.op, op.path) for op in enrichment.change.operations}
    assert enrichment.state_updates[INGRESS_KEY].resource_version == "7"


def test_without_the_state_store_nothing_is_diffed_or_learnt() -> None:
    """State unavailable: the change says so and no state update is proposed."""
    event = _write(responseObject=_ingress())

    enrichment = ENRICHER.enrich(REDACTOR.redact(event), {}, available=False)

    assert enrichment.change is not None
    assert enrichment.change.baseline == "unavailable"
    assert enrichment.state_updates == {}


def test_a_dry_run_raises_no_change_findings() -> None:
    """A dry run is recorded as such; what it would have changed is not a finding."""
    event = _write(
        responseObject=_ingress(),
        requestURI="/apis/networking.k8s.io/v1/namespaces/shop/ingresses?dryRun=All",
    )

    enrichment = ENRICHER.enrich(REDACTOR.redact(event), {})

    assert enrichment.dry_run
    assert enrichment.findings == ()
    assert enrichment.state_updates == {}


def test_a_tls_secret_is_stored_with_its_certificate_names() -> None:
    """A03's Secret: its state keeps the leaf certificate's SANs, which later Ingresses are
    checked against; a host outside them is a finding."""
    secret = find_event("0007.json", stage="ResponseComplete", verb="create")

    stored = ENRICHER.enrich(REDACTOR.redact(secret), {}).state_updates[TLS_KEY]
    assert stored.certificate_sans == ("shop.example.test", "www.shop.example.test")

    event = _write(responseObject=_ingress(tls_secret="shop-tls", host="api.other.test"))
    enrichment = ENRICHER.enrich(REDACTOR.redact(event), {TLS_KEY: stored})
    ids = {f.id for f in enrichment.findings}
    assert "tls-host-not-in-certificate" in ids
    assert "tls-secret-unknown" not in ids


def test_the_request_uri_keeps_no_credential() -> None:
    """The request URI the record keeps has the values of a streaming subresource replaced."""
    event = make_event(code=403, requestURI="/api/v1/namespaces/shop/pods/web/exec?command=cat&container=c")
    event["objectRef"] |= {"resource": "pods", "subresource": "exec", "apiGroup": ""}

    enrichment = ENRICHER.enrich(REDACTOR.redact(event), {})

    assert enrichment.request_uri == "/api/v1/namespaces/shop/pods/web/exec?command=<redacted>&container=c"
