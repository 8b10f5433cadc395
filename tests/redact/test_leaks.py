from __future__ import annotations

import base64
import bz2
import gzip
import json
import lzma
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.secret_shapes import CAPTURES, SCENARIO
from webhook.cli import main
from webhook.redact.leaks import Leak, encodings, named_encodings, scan

VALUE: Final = 'p<a>ss"wörd&1'


def test_encodings_of_a_value() -> None:
    """Plain, base64 (std/url, padded or not), hex in both cases and the JSON forms."""
    raw = VALUE.encode()
    forms = encodings(VALUE)

    assert raw in forms
    assert base64.b64encode(raw) in forms
    assert base64.urlsafe_b64encode(raw).rstrip(b"=") in forms
    assert base64.b64encode(raw).rstrip(b"=") in forms
    assert raw.hex().encode() in forms
    assert raw.hex().upper().encode() in forms
    assert b'p<a>ss\\"w\xc3\xb6rd&1' in forms  # JSON as orjson writes it
    assert b'p<a>ss\\"w\\u00f6rd&1' in forms  # JSON, ASCII only
    assert b'p\\u003ca\\u003ess\\"w\xc3\xb6rd\\u00261' in forms  # JSON as Go writes it


# The review's escaped values (finding 3): inside a manifest annotation, then in a record.
REVIEW_ESCAPED: Final = ("RT&SECRET-61<xyz>", 'RT"SECRET-63-xyz', "RT\\SECRET-65-xyz")


def _go_json(value: object) -> str:
    """JSON as Go writes it: ``< > &`` escaped, as in a kapp.k14s.io/original annotation."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@pytest.mark.parametrize("value", REVIEW_ESCAPED)
def test_values_escaped_twice_are_found(value: str, tmp_path: Path) -> None:
    """A value in a manifest annotation, written in a record, is escaped twice: still found."""
    manifest = {"kind": "Secret", "stringData": {"password": value}}
    record = {"change": {"operations": [{"path": "/metadata/annotations/kapp.k14s.io~1original"}]}}
    record["change"]["operations"][0]["old"] = _go_json(manifest)
    (tmp_path / "records.jsonl").write_text(json.dumps(record, ensure_ascii=False) + "\n")
    once = {named_encodings(value)[name] for name in ("plain", "json", "json-ascii", "json-go")}

    (leak,) = scan([tmp_path], [value])

    assert not any(form in (tmp_path / "records.jsonl").read_bytes() for form in once)  # as before
    assert "+" in leak.encoding  # json-go+json for & < >, json+json for the others


def test_encodings_of_bytes() -> None:
    """Binary values get the byte-level forms (no JSON form: they are not text)."""
    forms = named_encodings(b"\x00\xff\xfe\x01binary")

    assert forms["plain"] == b"\x00\xff\xfe\x01binary"
    assert forms["hex"] == b"00fffe0162696e617279"
    assert "json" not in forms


@settings(max_examples=200, deadline=None)
@given(
    value=st.binary(min_size=10, max_size=64),
    before=st.binary(max_size=8),
    after=st.binary(max_size=8),
)
def test_value_found_inside_larger_base64(value: bytes, before: bytes, after: bytes) -> None:
    """A value inside a bigger blob that was base64'd whole is found at any alignment."""
    blob = base64.b64encode(before + value + after)

    assert any(form in blob for form in encodings(value))


def test_scan_walks_directories_and_rotated_files(tmp_path: Path) -> None:
    """Nested directories and rotated (also compressed) files are read; offsets are exact."""
    secret = "hunter2-QZXW"
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "records.jsonl").write_bytes(b'{"x":"' + secret.encode() + b'"}\n')
    (tmp_path / "a" / "records.jsonl.1").write_bytes(b"--" + base64.b64encode(secret.encode()))
    (tmp_path / "records.jsonl.2.gz").write_bytes(gzip.compress(b"...." + secret.encode().hex().encode()))
    (tmp_path / "records.jsonl.3.bz2").write_bytes(bz2.compress(b"x" + secret.encode()))
    (tmp_path / "records.jsonl.4.xz").write_bytes(lzma.compress(b"clean"))
    (tmp_path / "fake.gz").write_bytes(b"not gzip " + secret.encode())  # read as is

    leaks = scan([tmp_path], ["abc", secret])

    found = {(leak.file.relative_to(tmp_path).as_posix(), leak.encoding, leak.offset) for leak in leaks}
    assert found == {
        ("a/b/records.jsonl", "plain", 6),
        ("a/records.jsonl.1", "base64", 2),
        ("records.jsonl.2.gz", "hex", 4),
        ("records.jsonl.3.bz2", "plain", 1),
        ("fake.gz", "plain", 9),
    }
    assert {leak.secret for leak in leaks} == {1}


def test_short_values_are_skipped(tmp_path: Path) -> None:
    """Values under four characters would match noise: they are not looked for."""
    (tmp_path / "f").write_bytes(b"abc abc abc")

    assert scan([tmp_path], ["abc", "", "ab"]) == []
    assert len(scan([tmp_path], ["abc "])) == 2


def test_a_leak_never_holds_the_value(tmp_path: Path) -> None:
    """The report names file, index, encoding and offset, nothing else."""
    (tmp_path / "f").write_bytes(b"xx hunter2-QZXW")

    (leak,) = scan([tmp_path / "f"], ["hunter2-QZXW"])

    assert leak == Leak(file=tmp_path / "f", secret=0, encoding="plain", offset=3)
    assert "hunter2" not in repr(leak)


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.integers(0, 300),
    chunk=st.integers(1, 64),
    copies=st.integers(1, 3),
    gap=st.integers(0, 20),
)
def test_chunk_boundaries(
    tmp_path_factory: pytest.TempPathFactory, prefix: int, chunk: int, copies: int, gap: int
) -> None:
    """Every occurrence is reported exactly once wherever the chunks are cut."""
    secret = b"QZXW-secret"
    content = b"." * prefix + (secret + b"-" * gap) * copies
    path = tmp_path_factory.mktemp("scan") / "f"
    path.write_bytes(content)

    leaks = scan([path], [secret.decode()], chunk_size=chunk)

    expected = [prefix + i * (len(secret) + gap) for i in range(copies)]
    assert sorted(leak.offset for leak in leaks if leak.encoding == "plain") == expected


def test_raw_captures_do_leak() -> None:
    """The control for the redaction tests: unredacted captures hold every line of secrets.txt."""
    secrets = (SCENARIO / "secrets.txt").read_text().splitlines()

    leaks = scan([CAPTURES], secrets)

    assert {leak.secret for leak in leaks} == set(range(len(secrets)))


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 1 with one line per leak (no value) when something leaks, 0 when clean."""
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("hunter2-QZXW\nabc\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "out.log").write_text("... hunter2-QZXW ...")
    (tmp_path / "clean").mkdir()

    assert main(["scan-leaks", str(secrets), str(tmp_path / "logs")]) == 1
    out = capsys.readouterr().out
    assert "out.log: byte 4: the secret on line 1 of " in out
    assert out.splitlines()[0].endswith(" (plain)")
    assert "hunter2" not in out
    assert main(["scan-leaks", str(secrets), str(tmp_path / "clean")]) == 0


def test_cli_as_a_console_script(tmp_path: Path) -> None:
    """``ingress-audit scan-leaks`` works as documented, run as users run it."""
    secrets = tmp_path / "secrets.txt"
    secrets.write_text("hunter2-QZXW\n")
    (tmp_path / "out.log").write_text("hunter2-QZXW")

    proc = subprocess.run(
        [
            Path(sys.executable).parent / "ingress-audit",
            "scan-leaks",
            str(secrets),
            str(tmp_path / "out.log"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert proc.returncode == 1
    assert "the secret on line 1 of" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr
