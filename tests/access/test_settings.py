"""The ``access:`` config section: built from YAML, checked, and safe by default."""

from __future__ import annotations

import pytest

from webhook.access.settings import AccessConfig
from webhook.config import Config, check_listen, parse_config
from webhook.core.net import split_address
from webhook.errors import ConfigError


def test_the_section_is_built_with_its_types() -> None:
    """Lists become tuples, nested sections their dataclasses, the rest keep the defaults."""
    config = parse_config(
        {
            "access": {
                "enabled": True,
                "format": "auto",
                "field_map": {"client_ip": "ip"},
                "syslog": {"udp": "[::1]:5514", "tcp": None},
                "trusted_proxies": ["192.0.2.0/24"],
                "keep": {"statuses": [401], "sensitive_paths": ["/admin*"]},
                "max_clients": 50,
            }
        }
    )

    access = config.access
    assert access.enabled
    assert access.field_map == {"client_ip": "ip"}
    assert (access.syslog.udp, access.syslog.tcp) == ("[::1]:5514", None)
    assert access.trusted_proxies == ("192.0.2.0/24",)
    assert (access.keep.statuses, access.keep.sensitive_paths) == ((401,), ("/admin*",))
    assert access.window_s == AccessConfig().window_s
    assert split_address("[::1]:5514") == ("::1", 5514)


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ({"trusted_cidrs": ["10.0.0.0/33"]}, "$.access.trusted_cidrs[0]: not an IP network"),
        ({"syslog": {"udp": "127.0.0.1:99999"}}, "$.access.syslog.udp: port out of range"),
    ],
)
def test_bad_values_are_named(section: dict[str, object], error: str) -> None:
    """Each problem names its path, never the value."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"access": section})
    assert error in caught.value.errors


def test_unknown_keys_and_formats_fail_the_schema() -> None:
    with pytest.raises(ConfigError):
        parse_config({"access": {"fromat": "auto"}})
    with pytest.raises(ConfigError):
        parse_config({"access": {"format": "apache"}})


def test_serving_checks_the_syslog_addresses_only_when_enabled() -> None:
    """A routable syslog address fails the start-up check unless allow_remote is set."""
    remote = {"syslog": {"udp": "10.1.2.3:5514"}}
    check_listen(parse_config({"access": remote}))  # not enabled: nothing listens

    with pytest.raises(ConfigError, match="allow_remote"):
        check_listen(parse_config({"access": {"enabled": True, **remote}}))
    allowed = {"enabled": True, "syslog": {"udp": "10.1.2.3:5514", "allow_remote": True}}
    check_listen(parse_config({"access": allowed}))
    assert Config().access.enabled is False
