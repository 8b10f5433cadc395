from __future__ import annotations

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from webhook.redact import x509_facts


def _leaf() -> tuple[trustme.CA, trustme.LeafCert]:
    ca = trustme.CA()
    return ca, ca.issue_cert("shop.example.test", "10.0.0.7")


def test_a_pem_chain_is_read_leaf_first() -> None:
    ca, leaf = _leaf()
    bundle = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)

    chain = x509_facts.chain(bundle + ca.cert_pem.bytes())

    assert chain is not None
    assert [c.is_ca for c in chain] == [False, True]
    assert chain[0].sans == ("shop.example.test", "10.0.0.7")
    assert chain[1].self_signed
    assert chain[0].issuer == chain[1].subject


def test_a_der_certificate_is_read_and_garbage_is_not() -> None:
    _, leaf = _leaf()
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(
        serialization.Encoding.DER
    )

    parsed = x509_facts.chain(der)

    assert parsed is not None
    assert parsed[0].sans == ("shop.example.test", "10.0.0.7")
    assert x509_facts.chain(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n") is None
    assert x509_facts.chain(b"\x00\x01") is None


def test_a_key_matches_its_own_certificate_only() -> None:
    _, leaf = _leaf()
    _, other = _leaf()
    cert = leaf.cert_chain_pems[0].bytes()

    assert x509_facts.key_matches(cert, leaf.private_key_pem.bytes()) is True
    assert x509_facts.key_matches(cert, other.private_key_pem.bytes()) is False
    assert x509_facts.key_matches(cert, b"not a key") is None
