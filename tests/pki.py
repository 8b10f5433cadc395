"""deploy.md's credentials for tests that talk real TLS: a serving certificate (127.0.0.1 and
localhost by default) from its own CA, a client CA, a bearer token file (0600), and the server config that
asks for them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import trustme

from webhook.config import AuthConfig, ServerConfig, TlsConfig

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    server_ca: trustme.CA
    client_ca: trustme.CA
    directory: Path
    token: str

    @property
    def ca_file(self) -> Path:
        """The serving certificate's CA, as a client trusts it."""
        return self.directory / "ca.crt"

    @property
    def token_file(self) -> Path:
        return self.directory / "token"

    def server(
        self,
        *,
        require: Literal["any", "all"] = "all",
        subjects: tuple[str, ...] = ("kube-apiserver-audit",),
        **auth: Any,
    ) -> ServerConfig:
        """HTTPS on a free loopback port, client certificates from the client CA with
        ``subjects`` allowed, and the bearer token."""
        return ServerConfig(
            host="127.0.0.1",
            port=0,
            tls=TlsConfig(
                cert_file=self.directory / "tls.crt",
                key_file=self.directory / "tls.key",
                client_ca_file=self.directory / "client-ca.crt",
            ),
            auth=replace(
                AuthConfig(client_subjects=subjects, bearer_token_files=(self.token_file,), require=require),
                **auth,
            ),
        )


def make_pki(directory: Path, token: str, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Pki:
    """Write the files into ``directory`` (which must exist); the serving certificate is for
    ``names``."""
    server_ca, client_ca = trustme.CA(), trustme.CA()
    leaf = server_ca.issue_cert(*names)
    leaf.cert_chain_pems[0].write_to_path(str(directory / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(directory / "tls.key"))
    server_ca.cert_pem.write_to_path(str(directory / "ca.crt"))
    client_ca.cert_pem.write_to_path(str(directory / "client-ca.crt"))
    (directory / "token").write_text(token + "\n")
    (directory / "token").chmod(0o600)
    return Pki(server_ca, client_ca, directory, token)
