"""``sources: aks:``: the follower's options, checked, read from the config, and described."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import pytest

from webhook.config import parse_config
from webhook.errors import ConfigError
from webhook.sources.aks_settings import AksStorageOptions, describe_aks, parse_aks, with_data_dir

URL: Final = "https://acct.blob.core.windows.net"
MARKER: Final = "S3CR3T-marker"  # no key or message may repeat a value

# docs/managed.md's example, key for key.
DOCUMENTED: Final = {
    "account_url": "https://auditlogsprodeu.blob.core.windows.net",
    "sas_token_file": "/etc/ingress-audit/aks/sas-token",
    "container": "insights-logs-kube-audit",
    "poll_interval_s": 60,
    "clusters": ["prod-aks-eu"],
}


# -- the options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field_name"),
    [
        ({"account_url": "http://account.blob.core.windows.net"}, "account_url"),
        ({"account_url": "https://account.blob.core.windows.net/?sv=2022&sig=abc"}, "account_url"),
        ({"account_url": None}, "account_url"),
        ({"sas_token_file": Path("sas")}, "account_url"),
        ({"account_key_file": None}, "account_url"),
        ({"connection_string_file": Path("conn")}, "connection_string_file"),
        ({"container": "Insights_Logs"}, "container"),
        ({"max_read_bytes": 1024}, "max_read_bytes"),
        ({"forget_after_s": 600.0}, "forget_after_s"),
        ({"poll_interval_s": 0.0}, "poll_interval_s"),
        ({"clusters": ("prod eu",)}, "clusters"),
        ({"account_url": "https://10.0.0.1/", "account_name": None}, "account_name"),
    ],
)
def test_options_are_checked(override: dict[str, Any], field_name: str) -> None:
    """Each wrong option is a config error that names the field and quotes no value."""
    base = AksStorageOptions(
        account_url="https://account.blob.core.windows.net", account_key_file=Path("key")
    )
    with pytest.raises(ConfigError) as caught:
        replace(base, **override).check()
    assert field_name in caught.value.message
    assert "sig=abc" not in caught.value.message


def test_account_name_comes_from_the_url() -> None:
    assert (
        AksStorageOptions(account_url="https://acct1.blob.core.windows.net").resolved_account_name()
        == "acct1"
    )
    assert (
        AksStorageOptions(account_url="http://127.0.0.1:10000/devstoreaccount1").resolved_account_name()
        == "devstoreaccount1"
    )


# -- the config section ------------------------------------------------------------------------------


def test_the_documented_section_is_read() -> None:
    """The keys docs/managed.md shows; the state file goes to the data dir, which a flag may move."""
    config = parse_config({"data_dir": "/var/lib/ingress-audit", "sources": {"aks": DOCUMENTED}})
    aks = config.sources.aks

    assert aks is not None
    assert aks.account_url == "https://auditlogsprodeu.blob.core.windows.net"
    assert aks.sas_token_file == Path("/etc/ingress-audit/aks/sas-token")
    assert (aks.container, aks.poll_interval_s, aks.clusters) == (
        "insights-logs-kube-audit",
        60,
        ("prod-aks-eu",),
    )
    assert with_data_dir(aks, config.data_dir).state_file == Path(
        "/var/lib/ingress-audit/aks-storage-state.json"
    )
    assert parse_config({}).sources.aks is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"clusters": []}, "$.sources.aks.clusters: empty"),
        ({"clusters": None}, "$.sources.aks: fails 'required' (missing 'clusters')"),
        ({"clusters": [f"{MARKER} eu"]}, "$.sources.aks.clusters[0]"),
        ({"account_url": f"https://a.blob.core.windows.net/?sig={MARKER}"}, "$.sources.aks.account_url"),
        ({"account_url": f"ftp://{MARKER}"}, "$.sources.aks.account_url"),
        ({"account_key_file": "/etc/key"}, "$.sources.aks.account_url"),
        ({"connection_string_file": "/etc/conn"}, "$.sources.aks.connection_string_file"),
        ({"container": f"{MARKER}"}, "$.sources.aks.container"),
        ({"poll_interval_s": 0}, "$.sources.aks.poll_interval_s"),
        ({"state_file": f"/{MARKER}"}, "$.sources.aks"),
        ({"account_name": MARKER}, "$.sources.aks.account_name"),
    ],
)
def test_a_wrong_section_names_the_key_never_the_value(change: dict[str, Any], problem: str) -> None:
    """An empty ``clusters`` reads nothing and is refused, as is any key that cannot work."""
    aks = {key: value for key, value in {**DOCUMENTED, **change}.items() if value is not None}

    with pytest.raises(ConfigError) as caught:
        parse_config({"sources": {"aks": aks}})

    assert [line for line in caught.value.errors if line.startswith(problem)], caught.value.errors
    assert MARKER not in str(caught.value) + repr(caught.value.errors)


def test_parse_aks_without_the_section() -> None:
    assert parse_aks(None) is None


@pytest.mark.parametrize(
    ("credential", "shown"),
    [
        (
            {"sas_token_file": "/etc/aks/sas"},
            "https://acct.blob.core.windows.net with sas_token_file /etc/aks/sas",
        ),
        (
            {"account_key_file": "/etc/aks/key"},
            "https://acct.blob.core.windows.net with account_key_file /etc/aks/key",
        ),
        ({"connection_string_file": "/etc/aks/conn"}, "the account in connection_string_file /etc/aks/conn"),
    ],
)
def test_what_check_config_says(credential: dict[str, str], shown: str) -> None:
    """The container, the account, the credential's file (never its content) and the clusters."""
    url = (
        {}
        if "connection_string_file" in credential
        else {"account_url": "https://acct.blob.core.windows.net"}
    )
    aks = parse_aks({**url, **credential, "clusters": ["prod-aks-eu", "Prod-AKS-US"]})
    assert aks is not None

    assert describe_aks(aks) == (
        f"sources.aks: follows container insights-logs-kube-audit of {shown}, every 60 s, "
        "for clusters prod-aks-eu, Prod-AKS-US; state in aks-storage-state.json"
    )
