from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from tests.conftest import scenario_secrets
from webhook.errors import ConfigError
from webhook.sources.firehose_keys import MAX_KEY_BYTES, FirehoseGrant, FirehoseKey, FirehoseKeys

PROD_KEY = "3f9c1e7a5b2d4f6081a9c3e5b7d9f1a2c4e6b8d0f2a4c6e8b0d2f4a6c8e0b2d4"
FLEET_KEY = "Zm9vYmFyYmF6cXV4LXF1dXotY29yZ2UtZ3JhdWx0LWdhcnBseQ"


def key_file(tmp_path: Path, name: str, content: bytes | str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


def load(tmp_path: Path) -> FirehoseKeys:
    return FirehoseKeys.load(
        [
            FirehoseKey(key_file=key_file(tmp_path, "prod.key", PROD_KEY + "\n"), clusters=("prod-eu",)),
            FirehoseKey(key_file=key_file(tmp_path, "fleet.key", FLEET_KEY), clusters=("prod-eu", "prod-us")),
        ]
    )


def test_each_key_grants_its_own_clusters(tmp_path: Path) -> None:
    keys = load(tmp_path)

    prod = keys.authenticate(PROD_KEY)
    fleet = keys.authenticate(FLEET_KEY)

    assert prod == FirehoseGrant(tmp_path / "prod.key", frozenset({"prod-eu"}))
    assert prod.sole_cluster == "prod-eu"
    assert fleet == FirehoseGrant(tmp_path / "fleet.key", frozenset({"prod-eu", "prod-us"}))
    assert fleet.sole_cluster is None
    assert len(keys) == 2


@pytest.mark.parametrize(
    "offered",
    [
        None,
        "",
        "wrong-key-but-long-enough-0123456789",
        PROD_KEY + "\n",
        PROD_KEY[:-1],
        PROD_KEY + "0",
        PROD_KEY.upper(),
        " " + PROD_KEY,
        "x" * (MAX_KEY_BYTES + 1),
        PROD_KEY + "\udcff",  # a byte that is not UTF-8, as aiohttp passes it
        "\ud800",  # a lone surrogate no wire byte decodes to
    ],
    ids=[
        "missing",
        "empty",
        "wrong",
        "newline",
        "prefix",
        "longer",
        "case",
        "space",
        "huge",
        "non-utf8",
        "surrogate",
    ],
)
def test_wrong_or_missing_key_grants_nothing(tmp_path: Path, offered: str | None) -> None:
    assert load(tmp_path).authenticate(offered) is None


def test_key_of_the_longest_length_firehose_allows(tmp_path: Path) -> None:
    key = ("0123456789abcdef" * 256)[:MAX_KEY_BYTES]
    keys = FirehoseKeys.load([FirehoseKey(key_file=key_file(tmp_path, "k", key + "\r\n"), clusters=("c",))])

    assert keys.authenticate(key) is not None


def test_non_ascii_key_matches_the_bytes_sent(tmp_path: Path) -> None:
    """Firehose copies the key verbatim: a UTF-8 key arrives as the same bytes."""
    key = "schlüssel-für-firehose-0123456789"
    keys = FirehoseKeys.load([FirehoseKey(key_file=key_file(tmp_path, "k", key), clusters=("c",))])

    assert keys.authenticate(key) is not None
    assert keys.authenticate(key.encode().decode("utf-8", "surrogateescape")) is not None


def test_every_key_is_compared_even_after_a_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No early exit: the time taken does not say which key matched."""
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(len(a))
        return compare(a, b)

    keys = load(tmp_path)
    monkeypatch.setattr("webhook.sources.firehose_keys.hmac.compare_digest", counting)

    keys.authenticate(PROD_KEY)
    keys.authenticate("wrong-key-but-long-enough-0123456789")
    keys.authenticate("short")

    assert calls == [32] * 6  # fixed-length digests, whatever length was offered


@pytest.mark.parametrize(
    ("content", "wanted"),
    [
        (b"", "empty or too weak"),
        (b"\n", "empty or too weak"),
        (b"short-key\n", "empty or too weak"),
        (b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "empty or too weak"),
        (b"x" * (MAX_KEY_BYTES + 1), "more than 4096 bytes"),
        (PROD_KEY.encode() + b"\n" + FLEET_KEY.encode() + b"\n", "more than one line"),
        (PROD_KEY.encode() + b"\t", "control character"),
        (b" " + PROD_KEY.encode(), "begins or ends with a space"),
        (PROD_KEY.encode() + b" \n", "begins or ends with a space"),
    ],
    ids=[
        "empty",
        "newline",
        "short",
        "one-letter",
        "too-long",
        "two-lines",
        "tab",
        "leading-space",
        "trailing-space",
    ],
)
def test_bad_key_file_names_the_file_not_the_key(tmp_path: Path, content: bytes, wanted: str) -> None:
    path = key_file(tmp_path, "prod.key", content)

    with pytest.raises(ConfigError) as caught:
        FirehoseKeys.load([FirehoseKey(key_file=path, clusters=("prod-eu",))])

    assert wanted in caught.value.message
    assert str(path) in caught.value.message
    stripped = content.strip()
    assert not stripped or stripped.decode() not in caught.value.message


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read Firehose access key file .*nope\.key"):
        FirehoseKeys.load([FirehoseKey(key_file=tmp_path / "nope.key", clusters=("c",))])


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, "prod.key", PROD_KEY, mode=0o644)

    with pytest.raises(ConfigError, match="accessible by others"):
        FirehoseKeys.load([FirehoseKey(key_file=path, clusters=("c",))])


def test_same_key_in_two_files_is_refused(tmp_path: Path) -> None:
    """Two files, one key: which clusters it grants would be ambiguous."""
    entries = [
        FirehoseKey(key_file=key_file(tmp_path, "a.key", PROD_KEY + "\n"), clusters=("a",)),
        FirehoseKey(key_file=key_file(tmp_path, "b.key", PROD_KEY), clusters=("b",)),
    ]

    with pytest.raises(ConfigError, match=r"a\.key and .*b\.key hold the same key") as caught:
        FirehoseKeys.load(entries)

    assert PROD_KEY not in caught.value.message


@pytest.mark.parametrize(
    ("clusters", "wanted"),
    [
        ((), "clusters is empty"),
        (("prod-eu", "bad/name"), r"clusters\[1\] is not an EKS cluster name"),
        (("-starts-with-dash",), r"clusters\[0\]"),
        (("c" * 101,), r"clusters\[0\]"),
    ],
)
def test_bad_cluster_lists_are_refused(tmp_path: Path, clusters: tuple[str, ...], wanted: str) -> None:
    path = key_file(tmp_path, "prod.key", PROD_KEY)

    with pytest.raises(ConfigError, match=wanted):
        FirehoseKeys.load([FirehoseKey(key_file=path, clusters=clusters)])


def test_no_key_in_repr(tmp_path: Path) -> None:
    keys = load(tmp_path)

    assert repr(keys) == "FirehoseKeys(2 keys)"
    assert PROD_KEY not in repr(vars(keys))  # only salted digests are kept


@pytest.mark.parametrize("secret", scenario_secrets(), ids=lambda s: f"{s[:6]}…{len(s)}")
def test_no_secret_in_a_key_file_error(tmp_path: Path, secret: str) -> None:
    """Whatever a bad key file holds, the error names the file only."""
    messages: list[str] = []
    for n, content in enumerate([secret + "\n" + secret, secret[:10], " " + secret, secret * 70]):
        path = key_file(tmp_path, f"{n}.key", content)
        try:
            FirehoseKeys.load([FirehoseKey(key_file=path, clusters=("c",))])
        except ConfigError as exc:
            messages += [exc.message, str(exc)]
    assert len(messages) >= 6
    assert not [m for m in messages if secret[:10] in m]
