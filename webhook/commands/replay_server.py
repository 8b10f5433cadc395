"""``ingress-audit replay --server URL``: send log-backend files to a running server's ``/audit``.

A running server holds its data dir (the spool is locked), so a backfill into it goes through
its webhook, exactly as the apiserver would send the events: EventLists of up to 400 events.
The server filters, dedupes, redacts and records them; "busy" answers (``503``, ``429``, ``408``,
gateway errors) and connection failures are retried after their ``Retry-After``, each retry said
on stderr; any other refusal (``401``, ``403``, ``400``…) and a failed TLS handshake end the replay
at once with the server's reason, since sending again cannot change them. Lines that are not
events are counted and reported by file and line, never by content.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson

from webhook.commands._audit_logs import ReplaySummary, progress_bar, take
from webhook.errors import ConfigError, ReplaySendError
from webhook.sources.logfile import BadLine, read_events

__all__ = ["ClientCredentials", "replay_to_server"]

_ATTEMPTS: Final = 30
_TIMEOUT: Final = aiohttp.ClientTimeout(total=60)
# Answers that say "later": the server is busy or restarting. Every other non-200 is final.
_RETRY_STATUSES: Final = frozenset({408, 429, 500, 502, 503, 504})
_RESETS_MEAN_TLS: Final = 3


@dataclass(frozen=True)
class ClientCredentials:
    """What ``replay --server`` presents: the server's CA, a client certificate, a token; and
    ``server_name``, the name to check the server's certificate against when the URL's host
    is not on it (a port-forward to 127.0.0.1, say), as kubeconfig's ``tls-server-name``."""

    ca_file: Path | None = None
    server_name: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    token_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context, or None for the default one; ``ConfigError`` names the file
        that cannot be used."""
        if self.ca_file is None and self.client_cert is None:
            return None
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--ca-file {self.ca_file}: {_ssl_reason(exc)}") from None
        if self.client_cert is not None:
            try:
                context.load_cert_chain(self.client_cert, self.client_key)
            except (OSError, ssl.SSLError) as exc:
                names = f"--client-cert {self.client_cert}" + (
                    f" / --client-key {self.client_key}" if self.client_key else ""
                )
                raise ConfigError(f"{names}: {_ssl_reason(exc)}") from None
        return context

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token_file is not None:
            try:
                lines = self.token_file.read_text().split()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"--token-file {self.token_file}: {_ssl_reason(exc)}") from None
            if not lines:
                raise ConfigError(f"--token-file {self.token_file}: the file is empty")
            headers["Authorization"] = f"Bearer {lines[0]}"
        return headers


def _ssl_reason(exc: BaseException) -> str:
    """What went wrong, in words (never file contents): strerror, or the TLS library's reason."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError):
        return "not text"
    return type(exc).__name__


def _body(items: list[dict[str, Any]]) -> bytes:
    return orjson.dumps(
        {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}
    )


def _refusal(status: int, body: bytes) -> str:
    """The server's own error and reason (``{"error": …, "reason": …}``), else the status."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        reason = answer.get("reason")
        return f"{status} {answer['error']}" + (f": {reason[:200]}" if isinstance(reason, str) else "")
    return str(status)


def _tls_failure(exc: BaseException) -> str | None:
    """Why the TLS handshake failed, if that is what ``exc`` is: retrying cannot mend it."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return _ssl_reason(exc.certificate_error)
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        return _ssl_reason(cause)
    return None


def _say(line: str) -> None:
    sys.stderr.write(f"ingress-audit: replay: {line}\n")
    sys.stderr.flush()


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    attempts: int,
    server_name: str | None = None,
) -> dict[str, Any]:
    """POST one EventList until it is accepted: a refusal or a TLS failure ends the replay at
    once; "busy" answers and connection failures are retried, each retry said on stderr."""
    resets = 0
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(url, data=body, headers=headers, server_hostname=server_name) as resp:
                if resp.status == 200:
                    answer: dict[str, Any] = await resp.json()
                    return answer
                refusal = _refusal(resp.status, await resp.read())
                if resp.status not in _RETRY_STATUSES:
                    raise ReplaySendError(f"{url} refused the batch: {refusal}")
                delay = _retry_after(resp.headers.get("Retry-After"))
                why = f"answered {refusal}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if (tls := _tls_failure(exc)) is not None:
                raise ReplaySendError(f"TLS with {url} failed: {tls}") from None
            # A server that refuses our client certificate resets the connection right after
            # the TLS 1.3 handshake, before any answer: indistinguishable from a reset by a
            # restarting server once, telling when it happens on every try.
            resets = resets + 1 if isinstance(exc, OSError) and exc.errno == errno.ECONNRESET else 0
            if resets == _RESETS_MEAN_TLS and url.startswith("https:"):
                raise ReplaySendError(
                    f"TLS with {url} failed: the server reset the connection {resets} times before "
                    "answering; does it trust the --client-cert (and want one)?"
                ) from None
            delay = 1.0
            why = _connection_failure(exc)
        if attempt == attempts:
            raise ReplaySendError(f"{url} did not accept a batch after {attempts} attempts: {why}")
        _say(f"{url} {why}; retry {attempt} of {attempts - 1} in {delay:g} s")
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _retry_after(header: str | None) -> float:
    try:
        delay = float(header) if header else 1.0
    except ValueError:
        delay = 1.0
    return min(max(delay, 0.1), 10.0)


def _connection_failure(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "did not answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot be reached ({_ssl_reason(exc.os_error)})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection"
    if isinstance(exc, OSError) and exc.strerror:
        return f"failed ({exc.strerror.lower()})"
    return f"failed ({type(exc).__name__})"


async def replay_to_server(
    url: str,
    files: Sequence[Path],
    *,
    credentials: ClientCredentials | None = None,
    show_progress: bool = False,
    chunk_size: int = 400,
    attempts: int = _ATTEMPTS,
) -> ReplaySummary:
    credentials = credentials or ClientCredentials()
    headers = await asyncio.to_thread(credentials.headers)
    context = await asyncio.to_thread(credentials.ssl_context)
    summary = ReplaySummary(files=len(files), sent_to=url)
    bar = progress_bar() if show_progress else None
    if bar is not None:
        bar.start()
    try:
        connector = aiohttp.TCPConnector(ssl=context) if context else aiohttp.TCPConnector()
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as session:
            for path in files:
                position = [0]
                size = (await asyncio.to_thread(path.stat)).st_size
                task = bar.add_task(path.name, total=size) if bar is not None else None
                events = read_events(path, position)
                while chunk := await asyncio.to_thread(take, events, chunk_size):
                    bad = [e for e in chunk if isinstance(e, BadLine)]
                    for item in bad:
                        sys.stderr.write(f"ingress-audit: skipped {item.detail}\n")
                    items = [e for e in chunk if not isinstance(e, BadLine)]
                    summary.events += len(chunk)
                    summary.dead_letters += len(bad)
                    if items:
                        answer = await _post(
                            session, url, _body(items), headers, attempts, credentials.server_name
                        )
                        summary.records += int(answer.get("records", 0))
                        summary.duplicates += int(answer.get("duplicates", 0))
                        summary.dead_letters += int(answer.get("dead_lettered", 0))
                        summary.matched += int(answer.get("records", 0)) + int(answer.get("duplicates", 0))
                    if bar is not None and task is not None:
                        bar.update(task, completed=position[0])
    finally:
        if bar is not None:
            bar.stop()
    return summary
