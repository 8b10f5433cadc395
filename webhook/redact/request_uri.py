"""The ``request_uri`` a record keeps: path and parameter names as sent, sensitive values replaced.

A query string can carry credentials: ``pods/exec`` sends the command line
(``command=mysql&command=-pS3cret``), ``*/proxy`` forwards whatever the proxied service takes,
and any client may put a token in ``?access_token=``. The default filter keeps every 401 and
403, and those are the requests such a query is most likely to come with. So:

- on ``exec``, ``attach``, ``portforward`` and ``proxy`` every value is replaced, except the
  few that only say how the stream is set up (``_STREAM_PARAMS``);
- anywhere, the value of a parameter whose name looks like a credential (``_SECRET_NAMES``
  exactly, or containing one of ``_SECRET_PARTS``) is replaced.

The names stay, so a reader still sees what was asked (``command=<redacted>&command=<redacted>``).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote_plus

__all__ = ["MARKER", "redact_request_uri"]

MARKER: Final = "<redacted>"
_STREAMING: Final = frozenset({"exec", "attach", "portforward", "proxy"})
_STREAM_PARAMS: Final = frozenset({"container", "stdin", "stdout", "stderr", "tty", "ports", "timeout"})
_SECRET_NAMES: Final = frozenset(
    {"key", "apikey", "auth", "authorization", "code", "jwt", "pass", "pwd", "session", "sig", "signature"}
)
_SECRET_PARTS: Final = ("token", "passw", "secret", "credential", "apikey", "privatekey", "accesskey")


def redact_request_uri(uri: str, subresource: str | None = None) -> str:
    """``uri`` with the sensitive query values replaced by ``<redacted>``; the rest unchanged."""
    path, sep, query = uri.partition("?")
    if not sep or not query:
        return uri
    streaming = subresource in _STREAMING or path.rstrip("/").rpartition("/")[2] in _STREAMING
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        plain = unquote_plus(name)
        if eq and ((streaming and plain not in _STREAM_PARAMS) or _secret_name(plain)):
            part = f"{name}={MARKER}"
        parts.append(part)
    return f"{path}?{'&'.join(parts)}"


def _secret_name(name: str) -> bool:
    folded = name.lower().replace("_", "").replace("-", "").replace(".", "")
    return folded in _SECRET_NAMES or any(p in folded for p in _SECRET_PARTS)
