"""Certificate details of TLS Secrets, read inside the redaction stage before values are replaced.

Only public facts leave this module (names, dates, key types); a private key is parsed in
``private_key_matches`` to compare public keys and is never returned, logged or quoted. The
parsing itself (``webhook.redact.x509_facts``, with ``cryptography``) is imported at the first
certificate read, not with this module.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, TypeVar

from webhook.core.findings import Finding, Severity

__all__ = [
    "PEM_CERT",
    "CertificateCache",
    "CertificateError",
    "CertificateFacts",
    "CertificateInfo",
    "CertificateReport",
    "Finding",
    "Parsed",
    "Severity",
    "certificate_findings",
    "host_covered",
    "inspect_certificates",
    "parse_pem_chain",
    "private_key_matches",
    "read_certificates",
]


PEM_CERT: Final = b"-----BEGIN CERTIFICATE-----"
_CERT_KEYS: Final = frozenset({"tls.crt", "ca.crt"})
_MIN_KEY_SIZE: Final = {"RSA": 2048, "DSA": 2048, "EC": 256}
_WEAK_HASHES: Final = {"sha1": "certificate-sha1-signature", "md5": "certificate-md5-signature"}
_WEAK_HASH_NAME: Final = re.compile(r"(?<![a-z0-9])(sha1|md5)(?![0-9])")  # sha1WithRSA, ecdsa-with-SHA1
CACHE_SIZE: Final = 4096


class CertificateError(ValueError):
    """The bytes are not a certificate chain; the message never quotes them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateInfo:
    key: str
    position: int
    subject: str
    issuer: str
    serial: str
    sans: tuple[str, ...]
    not_before: str
    not_after: str
    days_to_expiry: int
    key_type: str
    key_size: int | None
    signature_algorithm: str | None
    self_signed: bool
    is_ca: bool
    chain_length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CertificateReport:
    """Everything the redaction stage keeps about the certificates of one Secret."""

    certificates: tuple[CertificateInfo, ...] = ()
    key_matches_certificate: bool | None = None
    findings: tuple[Finding, ...] = ()


def parse_pem_chain(data: bytes, *, key: str, now: datetime) -> tuple[CertificateInfo, ...]:
    """Details of every certificate in a PEM bundle (or one DER certificate), leaf first."""
    parsed = _parse_chain(data)
    if parsed is None:
        raise CertificateError(f"{key} is not a readable certificate chain")
    return _infos(parsed, key, now)


@dataclass(frozen=True, slots=True)
class Parsed:
    """The time-independent, public facts of one certificate (``webhook.redact.x509_facts``):
    what the cache keeps."""

    subject: str
    issuer: str
    serial: str
    sans: tuple[str, ...]
    not_before: str
    not_after: str
    expires: datetime
    key_type: str
    key_size: int | None
    signature_algorithm: str | None
    self_signed: bool
    is_ca: bool


_V = TypeVar("_V")


class _Lru(Generic[_V]):
    """A bounded map from digests to values, least recently used evicted first.

    Each step is one operation of the C ``OrderedDict``, atomic under the GIL; a race between
    threads can at worst skip a move or an eviction, never corrupt the map, so no lock is taken.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[bytes, _V] = OrderedDict()

    def get(self, digest: bytes) -> tuple[bool, _V | None]:
        """(True, value) if ``digest`` is held (now the most recently used), else (False, None)."""
        value = self._items.get(digest, _MISSING)
        if value is _MISSING:
            return False, None
        try:
            self._items.move_to_end(digest)
        except KeyError:  # evicted by another thread meanwhile: parse again
            return False, None
        return True, value  # type: ignore[return-value]

    def put(self, digest: bytes, value: _V) -> None:
        self._items[digest] = value
        while len(self._items) > self.size:
            try:
                self._items.popitem(last=False)
            except KeyError:  # emptied by another thread meanwhile
                break

    def items(self) -> list[tuple[bytes, _V]]:
        return list(self._items.items())

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


_MISSING: Final = object()


class CertificateCache:
    """A redactor's memory of certificate parses and key checks, so that a Secret seen again costs
    a digest instead of an X.509 parse.

    Keys are SHA-256 digests of a random salt of its own and the exact bytes (so a digest says
    nothing outside the process); values are the public details that records carry anyway, and
    whether a private key matches its certificate. No certificate or key bytes are kept, and
    nothing derived from the clock: days to expiry and the expiry findings are worked out at each
    use from the cached ``not_after``.

    A key check is remembered only for a certificate seen before: the first sight of a Secret
    costs one digest of its certificate and nothing more, so a cluster whose Secrets are all
    distinct pays little for the cache.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        if size < 1:
            raise ValueError("the certificate cache holds at least one entry")
        self._salted = hashlib.sha256(os.urandom(32))
        self.chains: _Lru[tuple[Parsed, ...] | None] = _Lru(size)
        self.key_matches: _Lru[bool | None] = _Lru(size)

    def chain(self, data: bytes) -> tuple[Parsed, ...] | None:
        """The parsed chain in ``data``; None when it is not a readable certificate chain."""
        return self.lookup(data)[1]

    def lookup(self, data: bytes) -> tuple[bytes, tuple[Parsed, ...] | None, bool]:
        """``data``'s digest, its parsed chain (None: unreadable) and whether it was held already."""
        digest = self._digest(data)
        held, parsed = self.chains.get(digest)
        if not held:
            parsed = _parse_chain(data)
            self.chains.put(digest, parsed)
        return digest, parsed, held

    def key_match(self, cert_digest: bytes, cert_pem: bytes, key_pem: bytes) -> bool | None:
        """``private_key_matches`` for the pair, remembered by the certificate's digest and the key."""
        digest = self._digest(cert_digest, key_pem)
        held, matches = self.key_matches.get(digest)
        if not held:
            matches = private_key_matches(cert_pem, key_pem)
            self.key_matches.put(digest, matches)
        return matches

    def clear(self) -> None:
        self.chains.clear()
        self.key_matches.clear()

    def _digest(self, data: bytes, more: bytes = b"") -> bytes:
        digest = self._salted.copy()
        digest.update(data)
        if more:
            digest.update(more)
        return digest.digest()


def _parse_chain(data: bytes) -> tuple[Parsed, ...] | None:
    from webhook.redact import x509_facts  # cryptography: loaded at the first certificate

    return x509_facts.chain(data)


def _infos(parsed: Sequence[Parsed], key: str, now: datetime) -> tuple[CertificateInfo, ...]:
    return tuple(
        CertificateInfo(
            key=key,
            position=position,
            subject=p.subject,
            issuer=p.issuer,
            serial=p.serial,
            sans=p.sans,
            not_before=p.not_before,
            not_after=p.not_after,
            days_to_expiry=math.floor((p.expires - now).total_seconds() / 86400),
            key_type=p.key_type,
            key_size=p.key_size,
            signature_algorithm=p.signature_algorithm,
            self_signed=p.self_signed,
            is_ca=p.is_ca,
            chain_length=len(parsed),
        )
        for position, p in enumerate(parsed)
    )


def private_key_matches(cert_pem: bytes, key_pem: bytes) -> bool | None:
    """Whether the leaf's public key belongs to the private key; None if either cannot be read."""
    from webhook.redact import x509_facts  # cryptography: loaded at the first certificate

    return x509_facts.key_matches(cert_pem, key_pem)


def certificate_findings(
    infos: Iterable[CertificateInfo],
    *,
    expiry_warning_days: int,
    key_matches: bool | None,
    path: str,
) -> tuple[Finding, ...]:
    """Expiry, key strength and signature findings; ``path`` locates the Secret."""
    findings: list[Finding] = []
    for info in infos:
        where = f"{path}[{info.key}]"
        label = f"certificate {info.position} of {info.key} ({info.subject})"
        if info.days_to_expiry < 0:
            findings.append(
                Finding(
                    id="certificate-expired",
                    severity="high",
                    message=f"{label} expired on {info.not_after}",
                    path=where,
                )
            )
        elif info.days_to_expiry <= expiry_warning_days:
            findings.append(
                Finding(
                    id="certificate-expiring",
                    severity="medium",
                    message=f"{label} expires in {info.days_to_expiry} days ({info.not_after})",
                    path=where,
                )
            )
        minimum = _MIN_KEY_SIZE.get(info.key_type)
        if minimum is not None and info.key_size is not None and info.key_size < minimum:
            findings.append(
                Finding(
                    id="certificate-weak-key",
                    severity="high",
                    message=f"{label} has a {info.key_size}-bit {info.key_type} key",
                    path=where,
                )
            )
        weak = _weak_hash(info.signature_algorithm)
        if weak is not None:
            findings.append(
                Finding(
                    id=_WEAK_HASHES[weak],
                    severity="medium" if weak == "sha1" else "high",
                    message=f"{label} is signed with {info.signature_algorithm}",
                    path=where,
                )
            )
        if info.self_signed and info.position == 0:
            findings.append(
                Finding(
                    id="certificate-self-signed",
                    severity="low",
                    message=f"{label} is self-signed",
                    path=where,
                )
            )
    if key_matches is False:
        findings.append(
            Finding(
                id="certificate-key-mismatch",
                severity="high",
                message="tls.key does not belong to the certificate in tls.crt",
                path=path,
            )
        )
    return tuple(findings)


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What ``read_certificates`` found among one Secret's values: nothing derived from the clock
    or from where the Secret sits in its event, so it can be kept and reported again later."""

    chains: tuple[tuple[str, tuple[Parsed, ...] | None], ...] = ()  # by key; None: unreadable
    key_matches: bool | None = None

    def report(self, *, now: datetime, expiry_warning_days: int, path: str) -> CertificateReport:
        """The certificates and findings at ``now``, for the Secret at ``path``."""
        if not self.chains:
            return _NO_REPORT  # most Secrets: no certificate, and no key to check
        infos: list[CertificateInfo] = []
        findings: list[Finding] = []
        for name, parsed in self.chains:
            if parsed is not None:
                infos.extend(_infos(parsed, name, now))
            else:
                findings.append(
                    Finding(
                        id="certificate-unparseable",
                        severity="medium",
                        message=f"{name} holds no readable certificate",
                        path=f"{path}[{name}]",
                    )
                )
        findings[:0] = certificate_findings(
            infos, expiry_warning_days=expiry_warning_days, key_matches=self.key_matches, path=path
        )
        return CertificateReport(
            certificates=tuple(infos), key_matches_certificate=self.key_matches, findings=tuple(findings)
        )


_NO_FACTS: Final = CertificateFacts()
_NO_REPORT: Final = CertificateReport()


def read_certificates(
    values: Mapping[str, bytes], *, cache: CertificateCache | None = None
) -> CertificateFacts:
    """Parse every certificate among a Secret's decoded values (``tls.crt``, ``ca.crt``, PEM),
    and check ``tls.key`` against ``tls.crt``'s leaf.

    Parses and key checks come from ``cache`` when the same bytes were seen before (None: always
    parse)."""
    chains: list[tuple[str, tuple[Parsed, ...] | None]] = []
    crt_digest: bytes | None = None  # tls.crt's, once it has been seen before
    for name, value in values.items():
        if not value or (name not in _CERT_KEYS and PEM_CERT not in value):
            continue
        if cache is None:
            parsed = _parse_chain(value)
        else:
            digest, parsed, held = cache.lookup(value)
            if name == "tls.crt" and held:
                crt_digest = digest
        chains.append((name, parsed))
    if not chains:
        return _NO_FACTS
    key_matches: bool | None = None
    crt, key = values.get("tls.crt"), values.get("tls.key")
    if crt and key and any(name == "tls.crt" and parsed for name, parsed in chains):
        if cache is not None and crt_digest is not None:
            key_matches = cache.key_match(crt_digest, crt, key)
        else:  # no cache, or a certificate not seen before: not worth remembering yet
            key_matches = private_key_matches(crt, key)
    return CertificateFacts(chains=tuple(chains), key_matches=key_matches)


def inspect_certificates(
    values: Mapping[str, bytes],
    *,
    now: datetime,
    expiry_warning_days: int,
    path: str,
    cache: CertificateCache | None = None,
) -> CertificateReport:
    """``read_certificates``, reported at ``now``: everything that depends on it is computed
    afresh, even when the parses come from ``cache``."""
    facts = read_certificates(values, cache=cache)
    return facts.report(now=now, expiry_warning_days=expiry_warning_days, path=path)


def host_covered(host: str, sans: Sequence[str]) -> bool:
    """RFC 6125: exact match, or ``*.`` standing for exactly one whole leftmost label."""
    wanted = _normal(host)
    address = _ip(wanted)
    for san in sans:
        name = _normal(san)
        if address is not None:
            if _ip(name) == address:
                return True
            continue
        if name == wanted:
            return True
        if name.startswith("*.") and name.count(".") >= 2:  # never *.com: one label is too broad
            label, _, rest = wanted.partition(".")
            if label and label != "*" and rest == name[2:]:
                return True
    return False


def _normal(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _weak_hash(signature_algorithm: str | None) -> str | None:
    found = _WEAK_HASH_NAME.search((signature_algorithm or "").lower())
    return found.group(1) if found else None
