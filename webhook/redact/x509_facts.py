"""The public facts of certificates, read with ``cryptography``; imported at the first certificate.

``cryptography`` costs a process ~16 MB (its Rust bindings and their Python classes) and
~60 ms to import. Most events hold no certificate (the default audit policy logs Secrets at
the Metadata level, without their data), so ``webhook.redact.certs`` imports this module only
when it reads its first one: a process that reads none never loads it. A private key is
parsed only to compare public keys, and is never returned, logged or quoted.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from webhook.redact.certs import PEM_CERT, Parsed

__all__ = ["chain", "key_matches"]


def chain(data: bytes) -> tuple[Parsed, ...] | None:
    """Every certificate of a PEM bundle (or the one DER certificate), leaf first; None when
    ``data`` is not a readable certificate chain."""
    try:
        if PEM_CERT in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
        return tuple(_parse(c) for c in certs)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def key_matches(cert_pem: bytes, key_pem: bytes) -> bool | None:
    """Whether the leaf's public key belongs to the private key; None if either cannot be read."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem)[0]
        # Only the public half is compared, so the costly RSA consistency checks (tens of ms per
        # key: a client creating TLS secrets could stall the event loop) are not needed.
        private = serialization.load_pem_private_key(
            key_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
        ours = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (ValueError, TypeError, UnsupportedAlgorithm, IndexError):
        return None  # encrypted, unsupported or garbage: nothing to compare
    return ours == theirs


def _parse(cert: x509.Certificate) -> Parsed:
    not_after = cert.not_valid_after_utc
    key_type, key_size = _key(cert.public_key())
    return Parsed(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=format(cert.serial_number, "x"),
        sans=_sans(cert),
        not_before=_rfc3339(cert.not_valid_before_utc),
        not_after=_rfc3339(not_after),
        expires=not_after,
        key_type=key_type,
        key_size=key_size,
        signature_algorithm=_signature_algorithm(cert),
        self_signed=_self_signed(cert),
        is_ca=_is_ca(cert),
    )


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(public: object) -> tuple[str, int | None]:
    if isinstance(public, rsa.RSAPublicKey):
        return "RSA", public.key_size
    if isinstance(public, ec.EllipticCurvePublicKey):
        return "EC", public.curve.key_size
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "Ed25519", None
    if isinstance(public, ed448.Ed448PublicKey):
        return "Ed448", None
    if isinstance(public, dsa.DSAPublicKey):
        return "DSA", public.key_size
    return type(public).__name__, None


def _sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return (*ext.get_values_for_type(x509.DNSName), *ips)


def _signature_algorithm(cert: x509.Certificate) -> str | None:
    oid = cert.signature_algorithm_oid
    name = oid._name
    return name if name and name != "Unknown OID" else oid.dotted_string


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # e.g. a SHA-1 signature cryptography will not check: fall back to the key identifiers
        return _same_key_ids(cert)
    return True


def _same_key_ids(cert: x509.Certificate) -> bool:
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return True  # same name and nothing says otherwise
    return aki.key_identifier in (None, ski.digest)
