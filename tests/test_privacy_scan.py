"""Tests for impact.privacy_scan: planted raw codes and key material are found, in every
file type and both code forms; clean artifacts (pseudonyms, numbers, dates) give nothing;
findings never reveal what they found."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import os
import sqlite3
import warnings
import zipfile
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impact import personal_code as pc
from impact import privacy_scan
from impact.privacy_scan import Finding, redact, scan_for_codes, scan_for_key
from impact.pseudonym import PseudonymKey, pseudonymise

KEY = PseudonymKey.demo()


def make_codes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 365 * 80, n).astype("timedelta64[D]")
    return pc.generate_legacy(np.datetime64("1940-01-01") + days, rng).tolist()


CODES = make_codes(300, seed=11)  # hyphenated DDMMYY-CNNNK
COMPACT = [c.replace("-", "") for c in CODES]


def found(findings: list[Finding], path: Path) -> set[tuple[str, str]]:
    """(redacted needle, form) pairs found in one file."""
    return {(f.needle, f.form) for f in findings if f.path == path}


def assert_no_raw(findings: list[Finding], secrets: list[str]) -> None:
    text = "\n".join([*map(str, findings), *map(repr, findings)])
    for s in secrets:
        assert s not in text


def write_clean(d: Path) -> None:
    """Artifacts of a well-behaved run: pseudonyms, numbers, dates, floats, random bytes."""
    rng = np.random.default_rng(3)
    d.mkdir(parents=True, exist_ok=True)
    ps = pseudonymise(pl.Series(CODES * 3), KEY, "person")
    n = ps.len()
    frame = pl.DataFrame(
        {
            "person": ps,
            "employer": pseudonymise(pl.Series(COMPACT * 3), KEY, "employer"),
            "period": pl.date_range(pl.date(2015, 1, 1), pl.date(2024, 12, 1), "1mo", eager=True)
            .sample(n, with_replacement=True, seed=1)
            .cast(pl.String),
            "wage": rng.random(n) * 3000,
            "amount": rng.integers(0, 10**6, n),
            "score": rng.random(n),
        }
    )
    frame.write_parquet(d / "panel.parquet", compression="zstd")
    frame.write_csv(d / "panel.csv")
    (d / "panel.json").write_text(json.dumps(frame.head(200).to_dicts(), default=str))
    (d / "run.log").write_text(
        "".join(
            f"2024-05-01T12:00:{i % 60:02d}.123456Z row={i} person={p}\n"
            for i, p in enumerate(ps.head(500))
        )
    )
    (d / "report.html").write_text(
        "<table>"
        + "".join(
            f"<tr><td>{p}</td><td>{w:.17f}</td></tr>"
            for p, w in zip(ps.head(300), frame["score"], strict=False)
        )
        + "</table>"
    )
    con = sqlite3.connect(d / "events.db")
    con.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, body TEXT, ts REAL)")
    con.executemany(
        "INSERT INTO ev (body, ts) VALUES (?, ?)",
        [(json.dumps({"person": p}), 1.7e9 + i) for i, p in enumerate(ps.head(300))],
    )
    con.commit()
    con.close()
    (d / "blob.bin").write_bytes(rng.bytes(300_000))


@pytest.fixture
def clean_dir(tmp_path: Path) -> Path:
    d = tmp_path / "clean"
    write_clean(d)
    return d


# --------------------------------------------------------------------------- codes
def test_clean_artifacts_give_no_findings(clean_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert scan_for_codes([clean_dir], CODES) == []
        assert scan_for_codes([clean_dir], COMPACT) == []


def test_planted_codes_found_in_every_file_type(tmp_path: Path) -> None:
    d = tmp_path / "dirty"
    write_clean(d)
    c = iter(range(0, 300, 2))  # indices of planted codes, two per file (both forms)

    def pair() -> tuple[str, str]:
        i = next(c)
        return CODES[i], COMPACT[i + 1]

    planted: dict[str, tuple[str, str]] = {}
    # CSV
    planted["a.csv"] = hyph, comp = pair()
    pl.DataFrame({"id": [hyph, comp, None], "x": [1, 2, 3]}).write_csv(d / "a.csv")
    # Parquet (zstd): the values are only visible decoded
    planted["b.parquet"] = hyph, comp = pair()
    pl.DataFrame({"person_code": [hyph] * 3 + [comp] * 2, "n": range(5)}).write_parquet(
        d / "b.parquet", compression="zstd", statistics=False
    )
    # JSON
    planted["c.json"] = hyph, comp = pair()
    (d / "c.json").write_text(json.dumps({"rows": [{"pc": hyph}, {"pc": comp}]}))
    # SQLite (adjacent text fields touch in the raw record)
    planted["d.sqlite"] = hyph, comp = pair()
    con = sqlite3.connect(d / "d.sqlite")
    con.execute("CREATE TABLE t (a TEXT, b TEXT)")
    con.execute("INSERT INTO t VALUES (?, ?)", (hyph, "2024"))
    con.execute("INSERT INTO t VALUES (?, ?)", (comp, "2024-01"))
    con.commit()
    con.close()
    # plain text log and HTML
    planted["e.log"] = hyph, comp = pair()
    (d / "e.log").write_text(f"WARNING rejected {hyph}\nERROR key={comp};\n")
    planted["f.html"] = hyph, comp = pair()
    (d / "f.html").write_text(f"<td>{hyph}</td><td>{comp}</td>")

    findings = scan_for_codes([d], CODES)
    for name, (hyph, comp) in planted.items():
        got = found(findings, d / name)
        assert (redact(hyph), "hyphenated") in got, name
        assert (redact(comp), "compact") in got, name
    # nothing reported for the clean files of the same directory
    assert {f.path.name for f in findings} == set(planted)
    # decoded locations for the container formats
    locs = {(f.path.name, f.location) for f in findings}
    assert ("b.parquet", "parquet column 'person_code'") in locs
    assert ("d.sqlite", "sqlite table 't' column 'a'") in locs
    counts = {(f.location, f.needle): f.count for f in findings if f.path.name == "b.parquet"}
    assert counts["parquet column 'person_code'", redact(planted["b.parquet"][0])] == 3
    assert counts["parquet column 'person_code'", redact(planted["b.parquet"][1])] == 2
    assert_no_raw(findings, CODES + COMPACT)


def test_needles_may_be_given_in_either_form(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text(f"{CODES[0]} {COMPACT[1]}")
    for needles in (CODES, COMPACT, pl.Series(CODES), np.asarray(CODES), iter(CODES)):
        assert len(scan_for_codes([tmp_path], needles)) == 2


def test_other_containers_numbers_and_names(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "a.csv.gz", "wt") as f:
        f.write(f"x,{CODES[0]}\n")
    with bz2.open(tmp_path / "b.bz2", "wt") as f:
        f.write(COMPACT[1])
    with zipfile.ZipFile(tmp_path / "c.xlsx", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/sharedStrings.xml", f"<t>{CODES[2]}</t>")
    # codes stored as numbers (pandas turns a code column with gaps into floats)
    pl.DataFrame({"i": [int(COMPACT[3])], "f": [float(COMPACT[4])]}).write_parquet(
        tmp_path / "d.parquet", compression="zstd"
    )
    pl.DataFrame({"pc": [CODES[5]]}).write_ipc(tmp_path / "e.arrow", compression="zstd")
    (tmp_path / f"person_{COMPACT[6]}.json").write_text("{}")
    pl.DataFrame({"nested": [[{"pc": COMPACT[7]}]]}).write_parquet(tmp_path / "g.parquet")

    findings = scan_for_codes([tmp_path], CODES)
    by_loc = {(f.path.name.split("_")[0], f.location, f.needle, f.form) for f in findings}
    assert ("a.csv.gz", "gzip content", redact(CODES[0]), "hyphenated") in by_loc
    assert ("b.bz2", "bz2 content", redact(CODES[1]), "compact") in by_loc
    assert ("c.xlsx", "zip member 'xl/sharedStrings.xml'", redact(CODES[2]), "hyphenated") in by_loc
    assert ("d.parquet", "parquet column 'i'", redact(CODES[3]), "number") in by_loc
    assert ("d.parquet", "parquet column 'f'", redact(CODES[4]), "number") in by_loc
    assert ("e.arrow", "arrow column 'pc'", redact(CODES[5]), "hyphenated") in by_loc
    assert ("person", "file path", redact(CODES[6]), "compact") in by_loc
    assert ("g.parquet", "parquet column 'nested.pc'", redact(CODES[7]), "compact") in by_loc
    assert_no_raw(findings, CODES + COMPACT)


def test_glued_codes_found_but_float_digits_are_not(tmp_path: Path) -> None:
    # an uncompressed string buffer: values concatenated without separators
    (tmp_path / "glued.bin").write_bytes(b"\x00" + "".join(COMPACT[:5]).encode() + b"\x00")
    # long digit runs that are not codes: floats printed with 17 digits, big integers
    rng = np.random.default_rng(5)
    (tmp_path / "floats.txt").write_text("\n".join(f"{x:.17f}" for x in rng.random(50_000)))
    # a lone code glued to other digits cannot be told from a number: not reported
    (tmp_path / "lone.txt").write_text(f"x{COMPACT[9]}2024x")
    findings = scan_for_codes([tmp_path], CODES)
    assert found(findings, tmp_path / "glued.bin") == {(redact(c), "embedded") for c in CODES[:5]}
    assert {f.path.name for f in findings} == {"glued.bin"}
    assert scan_for_codes([tmp_path], CODES, embedded=False) == []


def test_codes_inside_pseudonyms_are_ignored(tmp_path: Path) -> None:
    fake = "P" + COMPACT[0] + "abcdef0123456789abcde"  # pseudonym form, holds the digits
    assert len(fake) == 33
    (tmp_path / "ps.txt").write_text(f"{fake},{fake}\n")
    assert scan_for_codes([tmp_path], CODES) == []
    (tmp_path / "ps.txt").write_text(f"X{COMPACT[0]}abcdef0123456789abcde\n")  # not one
    assert found(scan_for_codes([tmp_path], CODES), tmp_path / "ps.txt") == {
        (redact(CODES[0]), "compact")
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(range(20)),
            st.booleans(),
            st.text(alphabet="ab ,;\n-P", max_size=40),
        ),
        max_size=40,
    ),
    st.integers(min_value=64, max_value=4096),
)
def test_counts_exact_across_chunk_boundaries(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    pieces: list[tuple[int, bool, str]],
    chunk: int,
) -> None:
    monkeypatch.setattr(privacy_scan, "CHUNK_BYTES", chunk)
    d = tmp_path_factory.mktemp("chunks")
    text, want = [], {}
    for i, hyphenated, filler in pieces:
        code = CODES[i] if hyphenated else COMPACT[i]
        text += [code, ";" + filler + ";"]
        form = "hyphenated" if hyphenated else "compact"
        want[redact(code), form] = want.get((redact(code), form), 0) + 1
    (d / "t.txt").write_text("".join(text))
    got = {
        (f.needle, f.form): f.count for f in scan_for_codes([d], CODES) if f.location == "raw bytes"
    }
    assert got == want


def test_redaction() -> None:
    assert redact("120785-12347") == "12****-***47"
    assert redact("12078512347") == "12****-***47"
    f = Finding(Path(f"/x/{COMPACT[0]}.csv"), "raw bytes", "compact", redact(CODES[0]), 1)
    assert COMPACT[0] not in str(f)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="1 of the codes") as err:
        scan_for_codes([tmp_path], [CODES[0], "12345-SECRET"])
    assert "SECRET" not in str(err.value)
    with pytest.raises(FileNotFoundError):
        scan_for_codes([tmp_path / "missing"], CODES)
    assert scan_for_codes([tmp_path], [None]) == []


def test_corrupt_container_warns_and_raw_bytes_still_scanned(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1" + CODES[0].encode() + b"garbage" + b"PAR1")
    with pytest.warns(RuntimeWarning, match="could not decode"):
        findings = scan_for_codes([tmp_path], CODES)
    assert found(findings, tmp_path / "bad.parquet") == {(redact(CODES[0]), "hyphenated")}


def test_truncated_archive_warns_and_keeps_scanning(tmp_path: Path) -> None:
    letters = np.random.default_rng(0).integers(97, 123, 400_000).astype(np.uint8).tobytes()
    data = gzip.compress(f"{CODES[0]}\n".encode() + letters + f"\n{CODES[1]}".encode())
    (tmp_path / "a.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "b.txt").write_text(CODES[2])
    with pytest.warns(RuntimeWarning, match="could not decompress"):
        findings = scan_for_codes([tmp_path], CODES)
    assert found(findings, tmp_path / "a.gz") == {(redact(CODES[0]), "hyphenated")}
    assert found(findings, tmp_path / "b.txt") == {(redact(CODES[2]), "hyphenated")}


# --------------------------------------------------------------------------- key
def test_key_material_found_in_every_form(tmp_path: Path, clean_dir: Path) -> None:
    key = PseudonymKey.generate()
    secret = bytes.fromhex(key.to_hex())
    (tmp_path / "config.json").write_text(json.dumps({"key": key.to_hex()}))
    (tmp_path / "env.log").write_text("IMPACT_PSEUDONYM_KEY=" + base64.b64encode(secret).decode())
    (tmp_path / "dump.bin").write_bytes(os.urandom(100) + secret + os.urandom(100))
    (tmp_path / "upper.txt").write_text(key.to_hex().upper())
    pl.DataFrame({"k": [key.domain_key("person").hex()]}).write_parquet(
        tmp_path / "sub.parquet", compression="zstd"
    )
    findings = scan_for_key([tmp_path, clean_dir], key)
    got = {(f.path.name, f.location, f.form, f.needle) for f in findings}
    fp = key.fingerprint
    assert ("config.json", "raw bytes", "hex", f"key {fp}") in got
    assert ("env.log", "raw bytes", "base64", f"key {fp}") in got
    assert ("dump.bin", "raw bytes", "raw", f"key {fp}") in got
    assert ("upper.txt", "raw bytes", "HEX", f"key {fp}") in got
    assert ("sub.parquet", "parquet column 'k'", "hex", f"person sub-key of key {fp}") in got
    assert {f.path.parent for f in findings} == {tmp_path}
    text = "\n".join(map(str, findings)) + repr(findings)
    assert key.to_hex() not in text and key.to_hex().upper() not in text
    assert base64.b64encode(secret).decode().rstrip("=") not in text


def test_key_counts_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(privacy_scan, "CHUNK_BYTES", 50)
    key = PseudonymKey.generate()
    (tmp_path / "k.txt").write_text(("xx" + key.to_hex() + "yyy") * 7)
    findings = scan_for_key([tmp_path], key)
    assert [(f.form, f.count) for f in findings if f.location == "raw bytes"] == [("hex", 7)]


def test_clean_artifacts_hold_no_key(clean_dir: Path) -> None:
    (clean_dir / "meta.json").write_text(json.dumps({"key_fingerprint": KEY.fingerprint}))
    assert scan_for_key([clean_dir], KEY) == []
    with pytest.raises(TypeError):
        scan_for_key([clean_dir], KEY.to_hex())  # type: ignore[arg-type]
