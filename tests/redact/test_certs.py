from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from tests.secret_shapes import SCENARIO, SecretSpec, audit_event, b64, secret_object
from webhook.redact.certs import (
    CertificateCache,
    CertificateError,
    CertificateInfo,
    certificate_findings,
    host_covered,
    inspect_certificates,
    parse_pem_chain,
    private_key_matches,
)
from webhook.redact.leaks import encodings
from webhook.redact.redactor import Redactor

NOW: Final = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
FIXTURE_CRT: Final = (SCENARIO / "manifests" / "tls.crt").read_bytes()
FIXTURE_KEY: Final = (SCENARIO / "manifests" / "tls.key").read_bytes()
SHA256_RSA: Final = bytes.fromhex("06092a864886f70d01010b")  # DER of the OID
SHA1_RSA: Final = bytes.fromhex("06092a864886f70d010105")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_RSA_2048: Final = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(
    key: PrivateKey = _RSA_2048,
    *,
    not_after: datetime = NOW + timedelta(days=365),
    sans: Sequence[str] = ("web.example.test",),
    issuer_key: PrivateKey | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "web.example.test")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")]) if issuer_key else name
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
    )
    signer = issuer_key or key
    if isinstance(signer, ed25519.Ed25519PrivateKey):
        return builder.sign(signer, None)
    return builder.sign(signer, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def parse_one(data: bytes) -> CertificateInfo:
    (info,) = parse_pem_chain(data, key="tls.crt", now=NOW)
    return info


def finding_ids(info: CertificateInfo, *, days: int = 30, key_matches: bool | None = True) -> list[str]:
    findings = certificate_findings([info], expiry_warning_days=days, key_matches=key_matches, path="p")
    return [f.id for f in findings]


def resign_with_sha1(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bytes:
    """cryptography no longer signs with SHA-1: swap the algorithm OID and sign the TBS ourselves."""
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes.replace(SHA256_RSA, SHA1_RSA)
    signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303 - the point of the test
    sha1 = der.replace(cert.tbs_certificate_bytes, tbs).replace(SHA256_RSA, SHA1_RSA)
    return sha1.replace(cert.signature, signature)


def test_fixture_certificate() -> None:
    """The A03 certificate: names, dates, key and signature as openssl shows them."""
    info = parse_one(FIXTURE_CRT)

    assert info.subject == info.issuer == "CN=shop.example.test"
    assert info.sans == ("shop.example.test", "www.shop.example.test")
    assert info.serial == "7cb2988e99d7a42a7717928736713db59aa2dc87"
    assert (info.not_before, info.not_after) == ("2026-11-24T14:20:27Z", "2027-11-24T14:20:27Z")
    assert info.days_to_expiry == 364
    assert (info.key_type, info.key_size) == ("RSA", 2048)
    assert info.signature_algorithm == "sha256WithRSAEncryption"
    assert (info.self_signed, info.is_ca, info.position, info.chain_length) == (True, True, 0, 1)
    assert finding_ids(info) == ["certificate-self-signed"]


def test_fixture_key_matches() -> None:
    """The A03 tls.key belongs to its certificate; another key does not."""
    assert private_key_matches(FIXTURE_CRT, FIXTURE_KEY) is True
    assert private_key_matches(FIXTURE_CRT, key_pem(_RSA_2048)) is False


def test_unreadable_key_is_none() -> None:
    """An encrypted or garbage key cannot be compared: None, not an error."""
    encrypted = key_pem(_RSA_2048, password=b"pw")

    assert private_key_matches(FIXTURE_CRT, encrypted) is None
    assert private_key_matches(FIXTURE_CRT, b"not a key") is None
    assert private_key_matches(b"not a cert", FIXTURE_KEY) is None


@pytest.mark.parametrize(
    ("days_left", "expected"),
    [
        (-1, ["certificate-expired"]),
        (0, ["certificate-expiring"]),
        (30, ["certificate-expiring"]),
        (31, []),
    ],
)
def test_expiry(days_left: int, expected: list[str]) -> None:
    """Expired is high; within the warning window (inclusive) is medium; beyond it, nothing."""
    not_after = NOW + timedelta(days=days_left, hours=1)
    info = parse_one(pem(make_cert(issuer_key=ec.generate_private_key(ec.SECP256R1()), not_after=not_after)))

    assert info.days_to_expiry == days_left
    assert finding_ids(info) == expected


def test_expired_is_high() -> None:
    """The expired finding names the date and is of high severity."""
    info = parse_one(pem(make_cert(not_after=NOW - timedelta(days=3))))

    (finding, _) = certificate_findings([info], expiry_warning_days=30, key_matches=None, path="p")

    assert (finding.id, finding.severity, finding.path) == ("certificate-expired", "high", "p[tls.crt]")
    assert info.not_after in finding.message


@pytest.mark.parametrize(
    ("key", "weak"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), True),  # noqa: S505 - weak on purpose
        (ec.generate_private_key(ec.SECP192R1()), True),
        (ec.generate_private_key(ec.SECP256R1()), False),
        (ed25519.Ed25519PrivateKey.generate(), False),
    ],
    ids=["rsa-1024", "ec-192", "ec-256", "ed25519"],
)
def test_weak_keys(key: PrivateKey, weak: bool) -> None:
    """RSA under 2048 bits and EC under 256 bits are weak; Ed25519 has no size to judge."""
    info = parse_one(pem(make_cert(key)))

    assert ("certificate-weak-key" in finding_ids(info)) is weak


def test_ed25519_details() -> None:
    """Ed25519 keys are named, without a size."""
    info = parse_one(pem(make_cert(ed25519.Ed25519PrivateKey.generate())))

    assert (info.key_type, info.key_size, info.signature_algorithm) == ("Ed25519", None, "ed25519")


def test_sha1_signature() -> None:
    """A SHA-1 signed certificate is reported (medium), and still counts as self-signed."""
    sha1 = resign_with_sha1(make_cert(_RSA_2048), _RSA_2048)

    info = parse_pem_chain(sha1, key="tls.crt", now=NOW)[0]  # DER: no PEM marker

    assert info.signature_algorithm == "sha1WithRSAEncryption"
    findings = certificate_findings([info], expiry_warning_days=30, key_matches=None, path="p")
    assert [(f.id, f.severity) for f in findings] == [
        ("certificate-sha1-signature", "medium"),
        ("certificate-self-signed", "low"),
    ]


def test_key_mismatch_finding() -> None:
    """A tls.key of another certificate is a high finding on the Secret."""
    info = parse_one(pem(make_cert(issuer_key=_RSA_2048, key=ec.generate_private_key(ec.SECP256R1()))))

    findings = certificate_findings([info], expiry_warning_days=30, key_matches=False, path="p")

    assert [(f.id, f.severity, f.path) for f in findings] == [("certificate-key-mismatch", "high", "p")]


def test_chain_from_a_ca() -> None:
    """Leaf then intermediate: positions, chain length, CA flags; only a root is self-signed."""
    root = trustme.CA()
    intermediate = root.create_child_ca()
    leaf = intermediate.issue_cert("web.example.test", "10.0.0.1", "*.apps.example.test")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)

    infos = parse_pem_chain(chain, key="tls.crt", now=datetime.now(UTC))

    assert [(i.position, i.chain_length, i.is_ca, i.self_signed) for i in infos] == [
        (0, 2, False, False),
        (1, 2, True, False),
    ]
    assert infos[0].sans == ("web.example.test", "*.apps.example.test", "10.0.0.1")
    assert infos[0].issuer == infos[1].subject


def test_root_in_a_chain_is_not_a_self_signed_leaf() -> None:
    """A chain that ships its root is fine: only a self-signed leaf is reported."""
    root = trustme.CA()
    leaf = root.issue_cert("web.example.test")
    chain = leaf.cert_chain_pems[0].bytes() + root.cert_pem.bytes()

    infos = parse_pem_chain(chain, key="tls.crt", now=datetime.now(UTC))

    assert [i.self_signed for i in infos] == [False, True]
    findings = certificate_findings(infos, expiry_warning_days=30, key_matches=None, path="p")
    assert findings == ()


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    ],
    ids=["text", "empty", "bad-der", "bad-base64"],
)
def test_garbage_raises_certificate_error(data: bytes) -> None:
    """Garbage raises CertificateError, a ValueError whose message names the key, not the data."""
    with pytest.raises(CertificateError, match=r"^tls\.crt is not a readable certificate chain$"):
        parse_pem_chain(data, key="tls.crt", now=NOW)
    assert issubclass(CertificateError, ValueError)


def test_inspect_a_secret() -> None:
    """tls.crt, ca.crt and any PEM value are read; garbage is a finding; key match is checked."""
    values = {
        "tls.crt": FIXTURE_CRT,
        "tls.key": FIXTURE_KEY,
        "ca.crt": b"nonsense",
        "bundle.pem": pem(make_cert(ec.generate_private_key(ec.SECP256R1()))),
        "password": b"-----BEGIN nothing-----",
    }

    report = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="responseObject")

    assert [c.key for c in report.certificates] == ["tls.crt", "bundle.pem"]
    assert report.key_matches_certificate is True
    assert sorted((f.id, f.path) for f in report.findings) == [
        ("certificate-self-signed", "responseObject[bundle.pem]"),
        ("certificate-self-signed", "responseObject[tls.crt]"),
        ("certificate-unparseable", "responseObject[ca.crt]"),
    ]


def test_inspect_mismatched_pair() -> None:
    """A TLS pair whose key is not the certificate's: key_matches False and the finding."""
    values = {"tls.crt": pem(make_cert()), "tls.key": FIXTURE_KEY}

    report = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p")

    assert report.key_matches_certificate is False
    assert "certificate-key-mismatch" in [f.id for f in report.findings]


def test_no_secret_material_in_findings() -> None:
    """Messages speak of keys and subjects; no PEM or key bytes end up in them."""
    values = {"tls.crt": b"\x00garbage-QZXW", "tls.key": FIXTURE_KEY}
    report = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p")

    text = repr(report)

    assert "QZXW" not in text
    assert "PRIVATE" not in text
    assert FIXTURE_KEY.splitlines()[1].decode() not in text


@pytest.mark.parametrize(
    ("host", "sans", "covered"),
    [
        ("shop.example.test", ["shop.example.test"], True),
        ("SHOP.Example.test.", ["shop.example.test"], True),
        ("www.shop.example.test", ["*.shop.example.test"], True),
        ("shop.example.test", ["*.shop.example.test"], False),  # not the apex
        ("a.b.shop.example.test", ["*.shop.example.test"], False),  # one label only
        ("foo.test", ["*.test"], False),  # too broad to honour
        ("fo.example.test", ["f*.example.test"], False),  # no partial-label wildcards
        ("*.shop.example.test", ["*.shop.example.test"], True),  # an Ingress wildcard host
        ("10.0.0.1", ["10.0.0.1"], True),
        ("10.0.0.1", ["*.0.0.1"], False),
        ("::1", ["0:0:0:0:0:0:0:1"], True),
        ("shop.example.test", [], False),
    ],
)
def test_host_covered(host: str, sans: list[str], covered: bool) -> None:
    """RFC 6125: exact names, one-label wildcards, IPs compared as addresses."""
    assert host_covered(host, sans) is covered


def _tls_secret(cert: x509.Certificate, key: PrivateKey = _RSA_2048) -> dict[str, bytes]:
    return {"tls.crt": pem(cert), "tls.key": key_pem(key)}


def test_cached_and_uncached_reports_are_the_same() -> None:
    """Every kind of value gives the same report from a cold cache, a warm one, and none."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    sha1 = make_cert().public_bytes(serialization.Encoding.DER).replace(SHA256_RSA, SHA1_RSA)
    secrets: list[dict[str, bytes]] = [
        {"tls.crt": FIXTURE_CRT, "tls.key": FIXTURE_KEY},
        {"tls.crt": FIXTURE_CRT, "tls.key": key_pem(_RSA_2048)},  # mismatch
        {"tls.crt": pem(make_cert(ec_key, not_after=NOW + timedelta(days=3))), "tls.key": b"junk"},
        {"tls.crt": pem(make_cert(issuer_key=ec_key)) + pem(make_cert(ec_key)), "ca.crt": b"nonsense"},
        {"ca.crt": sha1, "bundle.pem": pem(make_cert(not_after=NOW - timedelta(days=1)))},
    ]
    cache = CertificateCache()

    for values in secrets:
        plain = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p", cache=None)
        cold = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p", cache=cache)
        warm = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p", cache=cache)

        assert cold == plain
        assert warm == plain
    assert len(cache.chains) == 6  # the fixture's certificate once; unreadable bytes count too
    assert len(cache.key_matches) == 3


def test_the_cache_is_bounded_least_recently_used_first() -> None:
    """A full cache drops the entry used longest ago, never grows past its size."""
    cache = CertificateCache(size=3)
    certs = [pem(make_cert(sans=(f"host-{n}.example.test",))) for n in range(5)]

    for n, data in enumerate(certs[:3]):
        assert cache.chain(data) is not None
        assert len(cache.chains) == n + 1
    cache.chain(certs[0])  # used again: now the most recent
    for data in certs[3:]:
        cache.chain(data)
        assert len(cache.chains) == 3

    kept = {parsed[0].sans for _, parsed in cache.chains.items() if parsed}
    assert kept == {("host-0.example.test",), ("host-3.example.test",), ("host-4.example.test",)}
    with pytest.raises(ValueError, match="at least one"):
        CertificateCache(size=0)


def test_a_key_check_is_remembered_from_the_second_sight() -> None:
    """The first sight of a certificate costs a digest only; its key check is kept once it recurs."""
    cache = CertificateCache()
    values = {"tls.crt": FIXTURE_CRT, "tls.key": FIXTURE_KEY}

    counts = []
    for _ in range(3):
        report = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p", cache=cache)
        assert report.key_matches_certificate is True
        counts.append((len(cache.chains), len(cache.key_matches)))

    assert counts == [(1, 0), (1, 1), (1, 1)]


def test_the_redactors_cache_has_a_bound() -> None:
    """The cache a redactor keeps holds 4,096 chains and 4,096 key checks."""
    cache = Redactor(b"k" * 32).certificates
    assert cache.chains.size == cache.key_matches.size == 4096


def test_expiry_is_worked_out_against_now_for_a_cached_certificate() -> None:
    """The same cached certificate is valid, then expiring, then expired as the clock moves."""
    cache = CertificateCache()
    values = _tls_secret(make_cert(not_after=NOW + timedelta(days=100)))

    def report_at(moment: datetime) -> tuple[int, list[str]]:
        report = inspect_certificates(values, now=moment, expiry_warning_days=30, path="p", cache=cache)
        ids = [f.id for f in report.findings if f.id.startswith("certificate-exp")]
        return report.certificates[0].days_to_expiry, ids

    assert report_at(NOW) == (100, [])
    assert report_at(NOW + timedelta(days=80)) == (20, ["certificate-expiring"])
    assert report_at(NOW + timedelta(days=101)) == (-1, ["certificate-expired"])
    assert len(cache.chains) == 1  # parsed once, read three times


def test_a_changed_certificate_under_the_same_name_gets_new_details() -> None:
    """A Secret whose tls.crt (or tls.key) is replaced is read afresh, not from the old entry."""
    cache = CertificateCache()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    old = _tls_secret(make_cert(sans=("old.example.test",)))
    new = _tls_secret(make_cert(ec_key, sans=("new.example.test",)), ec_key)
    new_key_only = {"tls.crt": old["tls.crt"], "tls.key": key_pem(ec_key)}

    def inspect(values: dict[str, bytes]) -> tuple[tuple[str, ...], str, bool | None]:
        report = inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p", cache=cache)
        leaf = report.certificates[0]
        return leaf.sans, leaf.key_type, report.key_matches_certificate

    assert inspect(old) == (("old.example.test",), "RSA", True)
    assert inspect(new) == (("new.example.test",), "EC", True)
    assert inspect(new_key_only) == (("old.example.test",), "RSA", False)
    assert inspect(old) == (("old.example.test",), "RSA", True)


def test_the_cache_holds_no_secret_value() -> None:
    """Keys are keyed digests, values public details: no certificate or key bytes in any form."""
    cache = CertificateCache()
    values = {"tls.crt": FIXTURE_CRT, "tls.key": FIXTURE_KEY, "ca.crt": b"not-a-cert-QZXWVUTS"}
    for _ in range(2):  # the second sight remembers the key check too
        inspect_certificates(values, now=NOW, expiry_warning_days=30, path="p", cache=cache)
    assert (len(cache.chains), len(cache.key_matches)) == (2, 1)

    held = [*cache.chains.items(), *cache.key_matches.items()]
    assert all(len(digest) == 32 for digest, _ in held)
    dump = b"\n".join(digest + repr(value).encode() for digest, value in held)
    needles = {form for value in values.values() for form in encodings(value)}
    pem_lines = [
        line for value in (FIXTURE_CRT, FIXTURE_KEY) for line in value.splitlines() if b"-----" not in line
    ]
    needles |= {form for line in pem_lines if len(line) >= 16 for form in encodings(line)}
    assert needles
    assert not [needle for needle in needles if needle in dump]
    assert b"PRIVATE" not in dump
    other = CertificateCache()
    other.chain(FIXTURE_CRT)
    assert other.chains.items()[0][0] != cache.chains.items()[0][0]  # digests differ per process


_FIRST_CERTIFICATE: Final = """
import sys

import orjson

sys.modules["rich"] = None  # as `ingress-audit serve` leaves it out
from webhook.pipeline import workers  # noqa: F401, E402 - what a serve process imports
from webhook.redact.redactor import Redactor  # noqa: E402
from webhook.server import app  # noqa: F401, E402

opaque, tls = orjson.loads(sys.stdin.buffer.read())
redactor = Redactor(b"k" * 32)
loaded = ["cryptography" in sys.modules]
redactor.redact(opaque)
loaded.append("cryptography" in sys.modules)
details = redactor.redact(tls).secrets
loaded.append("cryptography" in sys.modules)
print(orjson.dumps([loaded, [c.subject for d in details for c in d.certificates]]).decode())
"""


def test_cryptography_is_imported_at_the_first_certificate_read() -> None:
    """A process that reads no certificate never loads ``cryptography`` (~16 MB): not with the
    server, the workers' module or a redactor, not for a Secret without one; the first
    certificate loads it, and is read in full."""
    opaque = audit_event(
        "secrets", "create", response=secret_object(SecretSpec("api", "shop", {"token": "s3cret-v4lue"}, {}))
    )
    tls = audit_event(
        "secrets",
        "get",
        response={
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "shop-tls", "namespace": "shop"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(FIXTURE_CRT), "tls.key": b64(FIXTURE_KEY)},
        },
    )
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_CERTIFICATE],
        input=orjson.dumps([opaque, tls]),
        capture_output=True,
        check=True,
        timeout=60,
    )

    loaded, subjects = orjson.loads(done.stdout)
    assert loaded == [False, False, True]
    assert subjects == ["CN=shop.example.test"]
