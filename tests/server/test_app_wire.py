"""The HTTPS surface as a hostile client sees it, byte for byte, over real TLS on loopback.

These are the reproductions of the security review that the server already withstood (its
authentication matrix A1-A32 and B1-B8, the HTTP smuggling shapes H1-H20, the endpoint matrix),
kept as regression tests so that they keep holding. Each case names the review's row. The
server runs deploy.md's configuration: server TLS, client certificates from a client CA with a
subject allow-list, and a bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.paths import ROOT
from tests.pki import make_pki
from webhook.config import Config
from webhook.server.app import RunningServer, start_server

SAMPLE = (ROOT / "examples" / "eventlist.json").read_bytes()
TOKEN = "review-token-0123456789abcdefghijklmnop"
SUBJECT = "kube-apiserver-audit"


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


@dataclass
class Wire:
    """A running server and what a client needs to reach it."""

    server: RunningServer
    server_ca: trustme.CA
    client_ca: trustme.CA
    tmp: Path

    @property
    def port(self) -> int:
        return self.server.addresses[0][1]

    def context(self, leaf: Leaf | None = None, *, tls: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.server_ca.configure_trust(context)
        if leaf is not None:
            context.load_cert_chain(leaf.cert, leaf.key)
        if tls is not None:
            context.minimum_version = context.maximum_version = tls
        return context

    def leaf(
        self,
        name: str,
        *,
        common_names: tuple[str, ...] | None = None,
        sans: tuple[str, ...] = (),
        usages: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
        valid: tuple[dt.datetime, dt.datetime] | None = None,
        issuer: Leaf | trustme.CA | None = None,
    ) -> Leaf:
        """A client certificate signed by the client CA (or ``issuer``), shaped as asked."""
        signer = self.client_ca if issuer is None else issuer
        if isinstance(signer, trustme.CA):
            issuer_cert = x509.load_pem_x509_certificate(signer.cert_pem.bytes())
            issuer_key = serialization.load_pem_private_key(signer.private_key_pem.bytes(), None)
        else:
            issuer_cert = x509.load_pem_x509_certificate(signer.cert.read_bytes())
            issuer_key = serialization.load_pem_private_key(signer.key.read_bytes(), None)
        assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        not_before, not_after = valid or (now - dt.timedelta(hours=1), now + dt.timedelta(days=1))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in (common_names or (name,))])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(san) for san in sans]), critical=False
            )
        cert = builder.sign(issuer_key, hashes.SHA256())
        leaf = Leaf(self.tmp / f"{name}.crt", self.tmp / f"{name}.key")
        leaf.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        leaf.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return leaf

    async def exchange(self, raw: bytes, context: ssl.SSLContext, *, timeout_s: float = 5.0) -> bytes:
        """Send ``raw`` on one TLS connection; everything the server answers until it closes."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=context)
        try:
            writer.write(raw)
            await writer.drain()
            received = b""
            with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
                async with asyncio.timeout(timeout_s):
                    while chunk := await reader.read(65536):
                        received += chunk
            return received
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def post(
        self, context: ssl.SSLContext, headers: list[tuple[str, str]] | tuple[()] = (), path: str = "/audit"
    ) -> int:
        """Status of one POST of the example EventList with exactly ``headers``."""
        return _statuses(await self.exchange(_request("POST", path, headers, SAMPLE), context))[0]


def _request(method: str, path: str, headers: list[tuple[str, str]] | tuple[()], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def _statuses(answer: bytes) -> list[int]:
    """The status codes of every response in ``answer`` (pipelined ones included)."""
    return [int(status) for status in re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer)]


def _bearer(token: str = TOKEN) -> tuple[str, str]:
    return ("Authorization", f"Bearer {token}")


@pytest.fixture
async def wire(tmp_path: Path) -> Wire:
    return await _serve(tmp_path, require="all")


@pytest.fixture
async def wire_any(tmp_path: Path) -> Wire:
    return await _serve(tmp_path, require="any")


_RUNNING: list[RunningServer] = []


async def _serve(tmp_path: Path, require: Literal["any", "all"]) -> Wire:
    pki = make_pki(tmp_path, TOKEN)
    server = pki.server(require=require, subjects=(SUBJECT,))
    running = await start_server(Config(data_dir=tmp_path / "data", server=server))
    _RUNNING.append(running)
    return Wire(running, pki.server_ca, pki.client_ca, tmp_path)


@pytest.fixture(autouse=True)
async def _stop_servers() -> AsyncIterator[None]:
    yield
    while _RUNNING:
        await _RUNNING.pop().stop()


# --- authentication, require: all (review section 2, A1-A32) ---------------------------------


async def test_a1_to_a5_both_credentials_are_needed(wire: Wire) -> None:
    """A1 nothing, A2 token only, A3 certificate only, A4 wrong token: 401; A5 both: 200."""
    good = wire.context(wire.leaf(SUBJECT))
    nothing = wire.context()
    answer = await wire.exchange(_request("POST", "/audit", (), SAMPLE), nothing)

    assert _statuses(answer) == [401]
    assert b"WWW-Authenticate: Bearer" in answer
    assert await wire.post(nothing, [_bearer()]) == 401
    assert await wire.post(good, []) == 401
    assert await wire.post(good, [_bearer("wrong-" + TOKEN)]) == 401
    assert await wire.post(good, [_bearer()]) == 200


async def test_a6_a15_a16_a_certificate_for_another_name_is_forbidden(wire: Wire) -> None:
    """A6 CN=mallory, A15 the allowed name in upper case, A16 the allowed name and a NUL: 403."""
    for name, cns in [("mallory", None), ("upper", (SUBJECT.upper(),)), ("nul", (SUBJECT + "\x00x",))]:
        assert await wire.post(wire.context(wire.leaf(name, common_names=cns)), [_bearer()]) == 403, name


async def test_a13_a14_any_listed_name_of_the_certificate_is_enough(wire: Wire) -> None:
    """A13 the allowed name as a DNS SAN only, A14 two CNs of which one is allowed: 200
    (documented: the CN or any DNS/URI/IP SAN may match)."""
    san_only = wire.leaf("san-only", common_names=("other",), sans=(SUBJECT,))
    multi = wire.leaf("multi", common_names=("mallory", SUBJECT))

    assert await wire.post(wire.context(san_only), [_bearer()]) == 200
    assert await wire.post(wire.context(multi), [_bearer()]) == 200


@pytest.mark.parametrize(
    "case",
    [
        "A7 another CA",
        "A8 expired",
        "A9 not yet valid",
        "A10 self-signed",
        "A11 forged chain",
        "A12 server EKU",
    ],
)
async def test_a7_to_a12_untrusted_certificates_never_finish_the_handshake(wire: Wire, case: str) -> None:
    """The handshake is refused: nothing reaches a handler, whatever the token."""
    now = dt.datetime.now(dt.UTC)
    leaf = {
        "A7 another CA": lambda: wire.leaf(SUBJECT, issuer=trustme.CA()),
        "A8 expired": lambda: wire.leaf(
            SUBJECT, valid=(now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        ),
        "A9 not yet valid": lambda: wire.leaf(
            SUBJECT, valid=(now + dt.timedelta(days=1), now + dt.timedelta(days=30))
        ),
        "A10 self-signed": lambda: _self_signed(wire),
        "A11 forged chain": lambda: wire.leaf(SUBJECT, issuer=wire.leaf("mallory")),
        "A12 server EKU": lambda: wire.leaf(SUBJECT, usages=(ExtendedKeyUsageOID.SERVER_AUTH,)),
    }[case]()

    answer = b""
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        answer = await wire.exchange(_request("POST", "/audit", [_bearer()], SAMPLE), wire.context(leaf))
    assert answer == b""
    assert await wire.post(wire.context(wire.leaf(SUBJECT)), [_bearer()]) == 200


def _self_signed(wire: Wire) -> Leaf:
    ca = trustme.CA()
    leaf = Leaf(wire.tmp / "self.crt", wire.tmp / "self.key")
    ca.cert_pem.write_to_path(str(leaf.cert))
    ca.private_key_pem.write_to_path(str(leaf.key))
    return leaf


@pytest.mark.parametrize(
    ("case", "headers", "status"),
    [
        ("A17 lower-case scheme", [("Authorization", f"bearer {TOKEN}")], 200),
        ("A18 extra spaces", [("Authorization", f"Bearer    {TOKEN}  ")], 200),
        ("A19 Basic", [("Authorization", f"Basic {TOKEN}")], 401),
        ("A20 Token scheme", [("Authorization", f"Token {TOKEN}")], 401),
        ("A21 a prefix of the token", [_bearer(TOKEN[:-1])], 401),
        ("A22 the token and one more character", [_bearer(TOKEN + "x")], 401),
        ("A23 X-Auth-Token", [("X-Auth-Token", TOKEN)], 401),
        ("A24 Proxy-Authorization", [("Proxy-Authorization", f"Bearer {TOKEN}")], 401),
        ("A26 Cookie", [("Cookie", f"token={TOKEN}")], 401),
        ("A27 two headers, the wrong one first", [_bearer("wrong-" + TOKEN), _bearer()], 401),
        ("A28 two headers, the right one first", [_bearer(), _bearer("wrong-" + TOKEN)], 200),
        ("A30 a non-ASCII token", [_bearer(TOKEN[:-1] + "é")], 401),
        ("A31 a lower-case header name", [("authorization", f"Bearer {TOKEN}")], 200),
        ("A32 a tab between scheme and token", [("Authorization", f"Bearer\t{TOKEN}")], 401),
    ],
)
async def test_a17_to_a32_only_the_bearer_header_carries_the_token(
    wire: Wire, case: str, headers: list[tuple[str, str]], status: int
) -> None:
    """The token counts only in ``Authorization: Bearer``, exactly, first header wins."""
    assert await wire.post(wire.context(wire.leaf(SUBJECT)), headers) == status, case


async def test_a25_a_token_in_the_query_is_ignored(wire: Wire) -> None:
    """A25 ``?access_token=``: 401."""
    context = wire.context(wire.leaf(SUBJECT))

    assert await wire.post(context, [], path=f"/audit?access_token={TOKEN}") == 401


async def test_b1_to_b8_require_any(wire_any: Wire) -> None:
    """``require: any``: either credential suffices, but a certificate for someone else is
    still refused unless a valid token comes with it."""
    wire = wire_any
    good, mallory = wire.context(wire.leaf(SUBJECT)), wire.context(wire.leaf("mallory"))

    assert await wire.post(wire.context(), [_bearer()]) == 200  # B1
    assert await wire.post(good, []) == 200  # B2
    assert await wire.post(mallory, [_bearer()]) == 200  # B3
    assert await wire.post(mallory, []) == 403  # B4
    assert await wire.post(mallory, [_bearer("wrong-" + TOKEN)]) == 403  # B5
    assert await wire.post(wire.context(), []) == 401  # B6
    now = dt.datetime.now(dt.UTC)
    expired = wire.leaf(SUBJECT, valid=(now - dt.timedelta(days=30), now - dt.timedelta(days=1)))
    with contextlib.suppress(ssl.SSLError, ConnectionError):  # B8: refused in the handshake
        assert (
            await wire.exchange(_request("POST", "/audit", [_bearer()], SAMPLE), wire.context(expired)) == b""
        )


# --- TLS (section 2) --------------------------------------------------------------------------


async def test_plain_http_on_the_tls_port_gets_nothing(wire: Wire) -> None:
    """Plain HTTP to the TLS port: the connection closes without a byte of HTTP."""
    reader, writer = await asyncio.open_connection("127.0.0.1", wire.port)
    answer = b""
    with contextlib.suppress(ConnectionError):  # closed, or reset: either way no answer
        writer.write(_request("POST", "/audit", [_bearer()], SAMPLE))
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
    writer.close()

    assert b"HTTP/1.1" not in answer


@pytest.mark.parametrize("cipher", ["AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES256-GCM-SHA384"])
async def test_tls12_without_forward_secret_aead_is_refused(wire: Wire, cipher: str) -> None:
    """TLS 1.2 with a CBC or a non-ECDHE suite: no handshake (ECDHE with AEAD only)."""
    context = wire.context(wire.leaf(SUBJECT), tls=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers(cipher)

    with pytest.raises((ssl.SSLError, ConnectionError)):
        await wire.exchange(_request("GET", "/healthz", ()), context)


# --- endpoints without credentials (section 2's endpoint matrix) ------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("POST", "/healthz", 405),
        ("GET", "/readyz", 200),
        ("POST", "/readyz", 405),
        ("GET", "/audit", 401),
        ("POST", "/audit", 401),
        ("GET", "/audit/", 404),
        ("GET", "/AUDIT", 404),
        ("GET", "/nonexistent", 404),
        ("POST", "/%61udit", 401),
    ],
)
async def test_endpoint_matrix(wire: Wire, method: str, path: str, status: int) -> None:
    """Only the probes answer without credentials; encoded paths are still authenticated."""
    body = SAMPLE if method == "POST" else b""
    answer = await wire.exchange(_request(method, path, (), body), wire.context())

    assert _statuses(answer) == [status]


# --- request smuggling (section 3, H1-H20) ----------------------------------------------------

_SMUGGLED = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
_BODY = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}'


def _head(*lines: str) -> bytes:
    auth = f"Authorization: Bearer {TOKEN}"
    return ("\r\n".join(["POST /audit HTTP/1.1", "Host: 127.0.0.1", auth, *lines]) + "\r\n\r\n").encode()


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


_JSON = "Content-Type: application/json"
_SHAPES: dict[str, tuple[bytes, list[int]]] = {
    "H1 Content-Length and chunked": (
        _head(_JSON, f"Content-Length: {len(_BODY)}", "Transfer-Encoding: chunked") + _chunked(_BODY),
        [400],
    ),
    "H2 two different Content-Lengths": (
        _head(_JSON, f"Content-Length: {len(_BODY)}", "Content-Length: 5") + _BODY,
        [400],
    ),
    "H3 a Content-Length list": (_head(_JSON, f"Content-Length: {len(_BODY)}, {len(_BODY)}") + _BODY, [400]),
    "H4 a signed Content-Length": (_head(_JSON, f"Content-Length: +{len(_BODY)}") + _BODY, [400]),
    "H5 a hex Content-Length": (_head(_JSON, f"Content-Length: {hex(len(_BODY))}") + _BODY, [400]),
    "H6 chunked, identity": (_head(_JSON, "Transfer-Encoding: chunked, identity") + _chunked(_BODY), [400]),
    "H7 xchunked and Content-Length": (
        _head(_JSON, "Transfer-Encoding: xchunked", f"Content-Length: {len(_BODY)}") + _BODY,
        [400],
    ),
    "H8 chunked after a tab": (_head(_JSON, "Transfer-Encoding:\tchunked") + _chunked(_BODY), [200, 200]),
    "H9 two Transfer-Encoding headers": (
        _head(_JSON, "Transfer-Encoding: chunked", "Transfer-Encoding: identity") + _chunked(_BODY),
        [400],
    ),
    "H10 a chunk size overflow": (
        _head(_JSON, "Transfer-Encoding: chunked") + b"ffffffffffffffffff\r\n" + _BODY + b"\r\n0\r\n\r\n",
        [400],
    ),
    "H11 CRLF in a quoted chunk extension": (
        _head(_JSON, "Transfer-Encoding: chunked")
        + f'{len(_BODY):x};ext="a\r\nb"\r\n'.encode()
        + _BODY
        + b"\r\n0\r\n\r\n",
        [400],
    ),
    "H12 bare LF line endings": (
        _head(_JSON, f"Content-Length: {len(_BODY)}").replace(b"\r\n", b"\n") + _BODY,
        [400],
    ),
    "H13 a space before the colon": (_head(_JSON, f"Content-Length : {len(_BODY)}") + _BODY, [400]),
    "H15 plain pipelining": (_head(_JSON, f"Content-Length: {len(_BODY)}") + _BODY, [200, 200]),
    "H17 a NUL in the target": (
        _head(_JSON, f"Content-Length: {len(_BODY)}").replace(b"/audit", b"/aud\x00it") + _BODY,
        [400],
    ),
    "H18 a 1 MB header": (_head(_JSON, "X-Pad: " + "a" * 1_000_000, f"Content-Length: {len(_BODY)}"), [400]),
    "H19 10,000 headers": (
        _head(_JSON, *(f"X-H{i}: x" for i in range(10_000)), f"Content-Length: {len(_BODY)}"),
        [400],
    ),
}


@pytest.mark.parametrize("shape", list(_SHAPES))
async def test_h1_to_h19_smuggling_shapes(wire: Wire, shape: str) -> None:
    """Each ambiguous framing is refused with 400 and the connection closed, so the request
    appended after it is never read as a second one; the valid ones answer both requests."""
    raw, expected = _SHAPES[shape]

    answer = await wire.exchange(raw + _SMUGGLED, wire.context(wire.leaf(SUBJECT)))

    assert _statuses(answer) == expected


async def test_h20_a_100_kb_request_line_gets_no_answer(wire: Wire) -> None:
    """H20: a request line of 100 KB is cut off: nothing is served."""
    raw = b"POST /audit?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    with contextlib.suppress(ssl.SSLError, ConnectionError):
        answer = await wire.exchange(raw, wire.context(wire.leaf(SUBJECT)))
        assert _statuses(answer) in ([], [400])


@pytest.mark.parametrize(("junk", "served"), [(60, True), (400, False)])
async def test_t1_a_long_client_chain(wire: Wire, junk: int, served: bool) -> None:
    """T1: the valid client certificate followed by ``junk`` unrelated CA certificates. Sixty
    (some 30 KB) are verified and served; four hundred are over OpenSSL's certificate-list
    limit and the handshake is refused; either way the next client is served."""
    leaf = wire.leaf(SUBJECT)
    chain = wire.tmp / f"chain-{junk}.crt"
    chain.write_bytes(leaf.cert.read_bytes() + b"".join(trustme.CA().cert_pem.bytes() for _ in range(junk)))
    long_chain = Leaf(chain, leaf.key)

    answer = b""
    with contextlib.suppress(ssl.SSLError, ConnectionError):
        answer = await wire.exchange(
            _request("POST", "/audit", [_bearer()], SAMPLE), wire.context(long_chain)
        )

    assert _statuses(answer) == ([200] if served else [])
    assert await wire.post(wire.context(wire.leaf(SUBJECT)), [_bearer()]) == 200
