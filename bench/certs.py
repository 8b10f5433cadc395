"""What the certificate cache saves and costs, in-process, per TLS Secret inspected.

``python -m bench.certs`` times ``inspect_certificates`` (the redaction stage's certificate work:
chain parse, details, key check, findings) per Secret, with and without the cache, on two
mixes: the same few TLS Secrets again and again (what the bench's SecretLists and a cluster's
controllers re-listing the same Secrets look like) and every certificate distinct (the worst
case for a cache: every look-up misses and, past the cache's size, evicts; once with one CA
shared by every Secret, once with no bytes shared at all). Medians of passes,
interleaved so a loaded machine affects both sides alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bench.report import table
from webhook.redact.certs import CertificateCache, inspect_certificates

__all__ = ["main", "tls_secrets"]

_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def tls_secrets(count: int, *, distinct: int, with_ca: bool = True) -> list[dict[str, bytes]]:
    """``count`` Secrets' decoded values over ``distinct`` leaves.

    With ``with_ca`` each holds tls.crt (leaf + the one CA), tls.key and ca.crt (the CA, the same
    bytes in every Secret); without, tls.crt is the leaf alone and there is no ca.crt, so no two
    Secrets share any bytes but the key.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench CA")])
    ca = _cert(key, ca_name, ca_name, serial=1, ca=True)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    leaves = []
    for n in range(distinct):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"svc-{n}.bench.test")])
        leaf = _cert(key, name, ca_name, serial=n + 2, ca=False)
        leaves.append(leaf.public_bytes(serialization.Encoding.PEM) + (ca_pem if with_ca else b""))
    if not with_ca:
        return [{"tls.crt": leaves[n % distinct], "tls.key": key_pem} for n in range(count)]
    return [{"tls.crt": leaves[n % distinct], "tls.key": key_pem, "ca.crt": ca_pem} for n in range(count)]


def _cert(
    key: rsa.RSAPrivateKey, subject: x509.Name, issuer: x509.Name, *, serial: int, ca: bool
) -> x509.Certificate:
    host = subject.rfc4514_string().removeprefix("CN=")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(_NOW - timedelta(days=30))
        .not_valid_after(_NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _per_secret(secrets: Sequence[dict[str, bytes]], cache: Callable[[], CertificateCache | None]) -> float:
    """µs per Secret for one pass; a fresh cache per pass, so the first sight of each is a miss."""
    used = cache()
    started = time.process_time()
    for values in secrets:
        inspect_certificates(values, now=_NOW, expiry_warning_days=30, path="responseObject", cache=used)
    return (time.process_time() - started) / len(secrets) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.certs", description=__doc__.split("\n")[0])
    parser.add_argument("--secrets", type=int, default=3000, help="Secrets inspected per pass")
    parser.add_argument("--repeated", type=int, default=8, help="distinct certificates, repeated mix")
    parser.add_argument("--cache-size", type=int, default=1024, help="below --secrets: misses evict")
    parser.add_argument("--passes", type=int, default=7)
    args = parser.parse_args(argv)
    mixes = {
        f"{args.repeated} certificates repeated": tls_secrets(args.secrets, distinct=args.repeated),
        "distinct leaves, one CA": tls_secrets(args.secrets, distinct=args.secrets),
        "all distinct, no CA (worst case)": tls_secrets(args.secrets, distinct=args.secrets, with_ca=False),
    }
    sides: dict[str, Callable[[], CertificateCache | None]] = {
        "no cache": lambda: None,
        "cache": lambda: CertificateCache(args.cache_size),
    }
    rows = []
    for mix, secrets in mixes.items():
        spent: dict[str, list[float]] = {side: [] for side in sides}
        for _ in range(args.passes):
            for side, cache in sides.items():
                spent[side].append(_per_secret(secrets, cache))
        base, cached = statistics.median(spent["no cache"]), statistics.median(spent["cache"])
        rows.append([mix, f"{base:,.1f}", f"{cached:,.1f}", f"{cached / base:.3f}"])
    sys.stdout.write(
        f"CPU µs per TLS Secret (inspect_certificates), median of {args.passes} passes"
        f" of {args.secrets:,}; cache size {args.cache_size:,}\n"
    )
    sys.stdout.write(table(["mix", "no cache", "cache", "cache / no cache"], rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
