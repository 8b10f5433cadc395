"""Serving TLS from files, reloaded without a restart when the files change.

cert-manager and similar tools rotate the certificate and key in place (an atomic symlink
swap in a mounted Secret). The server keeps one ``SSLContext`` whose SNI callback hands each
new handshake the current context; a reload builds a fresh context and swaps it in only if it
loads cleanly, so a half-written rotation never takes the endpoint down. The callback runs for
every ClientHello, with or without a server name.

Verification of client certificates is configured on the serving context, which the SNI swap
does not replace: a CA added to the bundle is trusted after a reload, a CA removed from it only
after a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import structlog

from webhook.errors import ConfigError

__all__ = ["TlsFiles", "TlsReloader", "build_context"]

log = structlog.get_logger(__name__)

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are fixed by OpenSSL.
_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def paths(self) -> tuple[Path, ...]:
        return (
            self.cert_file,
            self.key_file,
            *((self.client_ca_file,) if self.client_ca_file else ()),
        )


def build_context(files: TlsFiles) -> ssl.SSLContext:
    """A server context: TLS 1.2+, AEAD ciphers, client certificates verified when a CA is set.

    Client certificates are optional at the TLS layer, so that a client with a bearer token
    and no certificate can still connect and get a 401 instead of a handshake failure; a
    certificate that is presented must verify against the CA, or the handshake fails.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    for role, path in (
        ("cert_file", files.cert_file),
        ("key_file", files.key_file),
        ("client_ca_file", files.client_ca_file),
    ):
        if path is not None:
            try:
                path.open("rb").close()
            except OSError as exc:
                raise ConfigError(f"server.tls.{role} {path}: {_reason(exc)}") from None
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"server.tls.cert_file {files.cert_file} and key_file {files.key_file}: {_reason(exc)}"
        ) from None
    if files.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=files.client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"server.tls.client_ca_file {files.client_ca_file}: {_reason(exc)}") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "KEY_VALUES_MISMATCH":
            return "the key does not belong to the certificate"
        return (exc.reason or "not a valid certificate or key").replace("_", " ").lower()
    return (exc.strerror or "unreadable").lower()


class TlsReloader:
    """Holds the serving context and swaps in a new one when the files' contents change."""

    def __init__(self, files: TlsFiles, *, interval_s: float = 10.0) -> None:
        self.files = files
        self.interval_s = interval_s
        self._current = build_context(files)
        self._fingerprint = self._read_fingerprint()
        self.context = build_context(files)  # the one given to the server; never swapped itself
        self.context.sni_callback = self._select
        self.reloads = 0

    def _select(self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        sock.context = self._current

    def _read_fingerprint(self) -> str | None:
        digest = hashlib.sha256()
        try:
            for path in self.files.paths():
                digest.update(path.read_bytes())
        except OSError:
            return None
        return digest.hexdigest()

    def check(self) -> bool:
        """Reload if the files changed and load cleanly; True when a new context is in use."""
        fingerprint = self._read_fingerprint()
        if fingerprint is None or fingerprint == self._fingerprint:
            return False
        try:
            fresh = build_context(self.files)
        except ConfigError as exc:
            log.warning("tls.reload_failed", reason=exc.message)
            return False
        if self.files.client_ca_file is not None:
            # Verification settings stay those of the serving context after the SNI swap, so
            # a rotated CA bundle is added there too (a removed CA is dropped on restart).
            self.context.load_verify_locations(cafile=self.files.client_ca_file)
        self._current = fresh
        self._fingerprint = fingerprint
        self.reloads += 1
        log.info("tls.reloaded", reloads=self.reloads)
        return True

    async def watch(self) -> None:
        """Poll until cancelled; a failed check is logged and the current context kept."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await asyncio.to_thread(self.check)
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive a bad rotation
                log.error("tls.check_failed", error=type(exc).__name__)
