"""Tests for impact.pseudonym (keyed pseudonymisation, HMAC-SHA256).

The reference below is a deliberately naive scalar implementation with the standard
library's ``hmac.new``; the vectorised code must agree with it exactly.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import pickle
import re
import time
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impact import personal_code as pc
from impact import pseudonym as pseudonym_module
from impact.pseudonym import (
    DOMAINS,
    MIN_KEY_BYTES,
    PseudonymKey,
    PseudonymKeyError,
    _hmac_digests,
    looks_pseudonymised_expr,
    pseudonymise,
    pseudonymise_frame,
)

KEY = PseudonymKey.demo()
OTHER = PseudonymKey(bytes(range(32)))
HAND_EXAMPLE = "120785-12347"
PSEUDO_RE = re.compile(r"^[PE][0-9a-f]{32}$")
HYPO = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(value: str | None, key_bytes: bytes, domain: str) -> str | None:
    """Scalar reference: normalise (persons), HMAC with the domain sub-key, truncate."""
    if value is None:
        return None
    if domain == "person":
        value = re.sub(r"[ \t\n\r\f\v-]", "", value)
    sub = hmac.new(key_bytes, b"impact/pseudonym/v1/" + domain.encode(), hashlib.sha256).digest()
    mac = hmac.new(sub, value.encode("utf-8"), hashlib.sha256).hexdigest()
    return DOMAINS[domain] + mac[:32]


def codes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 365 * 80, n).astype("timedelta64[D]")
    return pc.generate_legacy(np.datetime64("1940-01-01") + days, rng)


# --------------------------------------------------------------------------- key
def test_repr_and_str_hide_the_key() -> None:
    key = PseudonymKey.generate()
    secret = key.to_hex()
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), str({"k": key})):
        assert secret not in text and secret.upper() not in text
        assert key.fingerprint in text
    assert len(key.fingerprint) == 8 and re.fullmatch(r"[0-9a-f]{8}", key.fingerprint)
    expected = hashlib.sha256(
        hmac.new(bytes.fromhex(secret), b"fingerprint", hashlib.sha256).digest()
    ).hexdigest()[:8]
    assert key.fingerprint == expected


def test_key_is_immutable_equal_by_value_and_picklable() -> None:
    key = PseudonymKey.generate()
    with pytest.raises(AttributeError):
        key._secret = b"x" * 32  # type: ignore[misc]
    assert key == PseudonymKey(bytes.fromhex(key.to_hex()))
    assert key != PseudonymKey.generate()
    assert pickle.loads(pickle.dumps(key)) == key
    assert hash(key) == hash(PseudonymKey(bytes.fromhex(key.to_hex())))


def test_short_key_is_rejected_without_echo() -> None:
    secret = b"0123456789abcdef0123456789abcde"  # 31 bytes
    with pytest.raises(PseudonymKeyError) as err:
        PseudonymKey(secret)
    assert "31" in str(err.value) and str(MIN_KEY_BYTES) in str(err.value)
    assert secret.decode() not in str(err.value) and secret.hex() not in str(err.value)
    with pytest.raises(TypeError):
        PseudonymKey("not bytes" * 8)  # type: ignore[arg-type]


def test_generate_is_random_and_long_enough() -> None:
    a, b = PseudonymKey.generate(), PseudonymKey.generate()
    assert a != b
    assert len(bytes.fromhex(a.to_hex())) == MIN_KEY_BYTES


def test_demo_key_is_fixed_and_flagged() -> None:
    # pinned: changing the demo key would silently change every demo output
    assert PseudonymKey.demo() == KEY
    assert KEY.fingerprint == "c75f3a31"
    assert KEY.is_demo and not PseudonymKey.generate().is_demo
    assert "demo=True" in repr(KEY)
    assert "never use it on real data" in (PseudonymKey.demo.__doc__ or "").lower()


@pytest.mark.parametrize(
    "encode",
    [
        bytes.hex,
        lambda b: b.hex().upper(),
        lambda b: base64.b64encode(b).decode(),
        lambda b: base64.b64encode(b).decode().rstrip("="),
        lambda b: base64.urlsafe_b64encode(b).decode(),
        lambda b: "  " + b.hex()[:20] + "\n" + b.hex()[20:] + "\n",
    ],
)
def test_from_env_decodes_hex_and_base64(monkeypatch: pytest.MonkeyPatch, encode) -> None:
    secret = os.urandom(48)
    monkeypatch.setenv("MY_KEY", encode(secret))
    assert PseudonymKey.from_env("MY_KEY") == PseudonymKey(secret)


def test_from_env_default_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMPACT_PSEUDONYM_KEY", KEY.to_hex())
    assert PseudonymKey.from_env() == KEY


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "abcd1234", "zz-not-a-key-SECRETVALUE!!", "a" * 63, "c2VjcmV0"],
)
def test_from_env_errors_name_the_variable_not_the_value(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("IMPACT_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("IMPACT_TEST_KEY", value)
    with pytest.raises(PseudonymKeyError) as err:
        PseudonymKey.from_env("IMPACT_TEST_KEY")
    message = str(err.value)
    assert "IMPACT_TEST_KEY" in message
    if value and value.strip():
        assert value.strip() not in message
    assert err.value.__cause__ is None
    assert err.value.__context__ is None or err.value.__suppress_context__


def test_from_file_raw_hex_and_base64(tmp_path) -> None:
    secret = os.urandom(32) + b"\x00\xff"  # not printable: raw bytes
    raw = tmp_path / "raw.key"
    raw.write_bytes(secret)
    hexed = tmp_path / "hex.key"
    hexed.write_text(secret.hex() + "\n")
    b64 = tmp_path / "b64.key"
    b64.write_text(base64.b64encode(secret).decode() + "\n")
    for p in (raw, hexed, b64):
        p.chmod(0o600)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert PseudonymKey.from_file(p) == PseudonymKey(secret)
    # the round trip used to write a key file
    out = tmp_path / "written.key"
    out.write_text(KEY.to_hex())
    out.chmod(0o600)
    assert PseudonymKey.from_file(out) == KEY


def test_from_file_errors_and_permission_warning(tmp_path) -> None:
    missing = tmp_path / "nope.key"
    with pytest.raises(PseudonymKeyError, match="nope.key"):
        PseudonymKey.from_file(missing)
    short = tmp_path / "short.key"
    short.write_bytes(b"\x00\x01" * 8)
    short.chmod(0o600)
    with pytest.raises(PseudonymKeyError, match="16 bytes"):
        PseudonymKey.from_file(short)
    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    with pytest.raises(PseudonymKeyError, match="empty"):
        PseudonymKey.from_file(empty)
    loose = tmp_path / "loose.key"
    loose.write_text(KEY.to_hex())
    loose.chmod(0o644)
    if os.name == "posix":
        with pytest.warns(UserWarning, match="chmod 600") as rec:
            assert PseudonymKey.from_file(loose) == KEY
        assert all(KEY.to_hex() not in str(w.message) for w in rec)
    bad = tmp_path / "bad.key"
    bad.write_text("this is not hex nor base64 SECRET!")
    bad.chmod(0o600)
    with pytest.raises(PseudonymKeyError) as err:
        PseudonymKey.from_file(bad)
    assert "SECRET" not in str(err.value)


def test_domain_keys_are_hmac_of_the_label() -> None:
    master = bytes.fromhex(KEY.to_hex())
    for domain in DOMAINS:
        want = hmac.new(master, f"impact/pseudonym/v1/{domain}".encode(), hashlib.sha256).digest()
        assert KEY.domain_key(domain) == want
    assert KEY.domain_key("person") != KEY.domain_key("employer")
    with pytest.raises(ValueError, match="unknown pseudonym domain"):
        KEY.domain_key("household")


# --------------------------------------------------------------------------- hashing
@HYPO
@given(st.lists(st.binary(max_size=80), max_size=30), st.binary(min_size=32, max_size=64))
def test_fast_hmac_equals_stdlib(values: list[bytes], subkey: bytes) -> None:
    want = [hmac.new(subkey, v, hashlib.sha256).digest()[:16] for v in values]
    assert _hmac_digests(values, subkey) == want


@HYPO
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=40),
    st.sampled_from(sorted(DOMAINS)),
)
def test_matches_reference_and_is_deterministic(values: list[str | None], domain: str) -> None:
    s = pl.Series("v", values, dtype=pl.String)
    out = pseudonymise(s, KEY, domain)
    master = bytes.fromhex(KEY.to_hex())
    assert out.to_list() == [reference(v, master, domain) for v in values]
    assert out.equals(pseudonymise(s, KEY, domain))
    assert out.name == "v" and out.dtype == pl.String and out.len() == s.len()


def test_hand_example_form() -> None:
    out = pseudonymise(pl.Series([HAND_EXAMPLE]), KEY, "person").item()
    assert PSEUDO_RE.fullmatch(out) and out.startswith("P") and len(out) == 33
    emp = pseudonymise(pl.Series(["40003012345"]), KEY, "employer").item()
    assert PSEUDO_RE.fullmatch(emp) and emp.startswith("E")


@HYPO
@given(st.data())
def test_hyphen_and_whitespace_do_not_matter_for_persons(data: st.DataObject) -> None:
    code = data.draw(st.sampled_from(list(codes(50, seed=1))))
    compact = code.replace("-", "")
    noisy = "".join(ch + data.draw(st.sampled_from(["", "", "", "-", " ", "\t"])) for ch in compact)
    out = pseudonymise(pl.Series([code, compact, noisy]), KEY, "person")
    assert out.n_unique() == 1


def test_employer_domain_hashes_the_exact_string() -> None:
    out = pseudonymise(pl.Series(["40003012345", "40003-012345"]), KEY, "employer")
    assert out[0] != out[1]


def test_nulls_preserved_and_order_kept() -> None:
    cs = list(codes(200, seed=2))
    values = [None if i % 7 == 0 else c for i, c in enumerate(cs)]
    out = pseudonymise(pl.Series(values), KEY, "person")
    assert [v is None for v in out.to_list()] == [v is None for v in values]
    master = bytes.fromhex(KEY.to_hex())
    assert out.to_list() == [reference(v, master, "person") for v in values]
    assert pseudonymise(pl.Series([None, None]), KEY, "person").to_list() == [None, None]
    assert pseudonymise(pl.Series([], dtype=pl.String), KEY, "person").len() == 0


def test_categorical_input_equals_string_input() -> None:
    s = pl.Series("c", list(codes(50, seed=3)) * 2)
    assert pseudonymise(s.cast(pl.Categorical), KEY, "person").equals(
        pseudonymise(s, KEY, "person")
    )


def test_different_keys_are_unlinkable() -> None:
    s = pl.Series(codes(10_000, seed=4))
    a = pseudonymise(s, KEY, "person")
    b = pseudonymise(s, OTHER, "person")
    assert a.n_unique() == b.n_unique() == 10_000
    assert not set(a.to_list()) & set(b.to_list())


def test_domains_are_separated() -> None:
    s = pl.Series(codes(2_000, seed=5)).str.replace("-", "")
    person = pseudonymise(s, KEY, "person")
    employer = pseudonymise(s, KEY, "employer")
    assert not set(person.str.slice(1).to_list()) & set(employer.str.slice(1).to_list())


def test_pseudonymised_values_look_pseudonymised_and_raw_do_not() -> None:
    s = pl.Series("pc", [*codes(100, seed=6), None])
    df = pl.DataFrame({"raw": s, "ps": pseudonymise(s, KEY, "person")})
    flags = df.select(
        raw=looks_pseudonymised_expr("raw"),
        ps=looks_pseudonymised_expr(pl.col("ps")),
        ps_person=looks_pseudonymised_expr("ps", "person"),
        ps_employer=looks_pseudonymised_expr("ps", "employer"),
    )
    assert not flags["raw"].any()
    assert flags["ps"].to_list() == [True] * 100 + [False]
    assert flags["ps_person"].sum() == 100 and not flags["ps_employer"].any()
    odd = pl.DataFrame({"x": ["P" + "0" * 31, "P" + "A" * 32, "X" + "0" * 32, "P" + "0" * 33]})
    assert not odd.select(looks_pseudonymised_expr("x")).to_series().any()


# --------------------------------------------------------------------------- frames
def _frame(n: int = 3_000) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    cs = codes(n // 3, seed=7)
    person = cs[rng.integers(0, cs.size, n)].astype(object)
    person[rng.random(n) < 0.05] = None
    return pl.DataFrame(
        {
            "row": np.arange(n),
            "person_code": pl.Series(person.tolist(), dtype=pl.String),
            "employer_id": rng.integers(4 * 10**10, 4 * 10**10 + 50, n).astype(str),
            "parent_code": pl.Series(np.roll(person, 1).tolist(), dtype=pl.String),
            "wage": rng.random(n),
        }
    )


COLUMNS = {"person_code": "person", "employer_id": "employer", "parent_code": "person"}


def test_frame_matches_series_and_keeps_other_columns() -> None:
    df = _frame()
    out = pseudonymise_frame(df, COLUMNS, KEY)
    assert out.columns == df.columns
    assert out.select("row", "wage").equals(df.select("row", "wage"))
    for col, domain in COLUMNS.items():
        assert out[col].equals(pseudonymise(df[col], KEY, domain))
    # the same person gets the same pseudonym in both person columns
    assert (
        out["parent_code"]
        .slice(1)
        .equals(out["person_code"].slice(0, df.height - 1), check_names=False)
    )


def test_lazy_and_eager_agree() -> None:
    df = _frame()
    lazy = pseudonymise_frame(df.lazy(), COLUMNS, KEY)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(pseudonymise_frame(df, COLUMNS, KEY))


def test_join_key_collisions_fall_back_to_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    df = _frame()
    want = pseudonymise_frame(df, COLUMNS, KEY)
    # a deliberately terrible "hash": every code collides with every other
    monkeypatch.setattr(pseudonym_module, "_join_key", lambda e: e.str.len_bytes().cast(pl.UInt64))
    assert pseudonymise_frame(df, COLUMNS, KEY).equals(want)
    assert pseudonymise_frame(df.lazy(), COLUMNS, KEY).collect().equals(want)


def test_frame_input_errors_do_not_leak_values() -> None:
    secret_code = "120785-12347"
    df = pl.DataFrame({"pc": [secret_code], "n": [12078512347]})
    with pytest.raises(TypeError) as err:
        pseudonymise_frame(df, {"n": "person"}, KEY)
    assert "12078512347" not in str(err.value)
    with pytest.raises(KeyError):
        pseudonymise_frame(df, {"missing": "person"}, KEY)
    with pytest.raises(ValueError, match="unknown pseudonym domain") as err2:
        pseudonymise_frame(df, {"pc": "persons"}, KEY)
    assert secret_code not in str(err2.value)
    with pytest.raises(TypeError):
        pseudonymise_frame(df, {"pc": "person"}, KEY.to_hex())  # type: ignore[arg-type]
    assert pseudonymise_frame(df, {}, KEY).equals(df)


def test_million_distinct_codes_five_rows_each_is_fast() -> None:
    cs = codes(1_000_000, seed=8)
    s = pl.Series("person_code", np.tile(cs, 5)).shuffle(seed=9)
    t0 = time.perf_counter()
    out = pseudonymise(s, KEY, "person")
    elapsed = time.perf_counter() - t0
    assert out.len() == 5_000_000 and out.null_count() == 0
    assert out.n_unique() == 1_000_000
    assert elapsed < 30, f"pseudonymising 5 M rows took {elapsed:.1f} s"


# --------------------------------------------------------------------------- enumeration
def enumerate_legacy_codes(first_day: str, days: int) -> np.ndarray:
    """Every valid legacy code of ``days`` consecutive birth dates: all 1,000 serials of each
    date, minus those whose check value would be 10 (never issued). About 909 per date."""
    dates = np.datetime64(first_day) + np.arange(days).astype("timedelta64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    months = dates.astype("datetime64[M]").astype(int) % 12 + 1
    dom = (dates - dates.astype("datetime64[M]")).astype(int) + 1
    prefix = dom * 100_000 + months * 1_000 + (years % 100) * 10 + (years // 100 - 18)
    first10 = (np.repeat(prefix, 1000) * 1000 + np.tile(np.arange(1000), days)).astype(np.int64)
    digits = (first10[:, None] // 10 ** np.arange(9, -1, -1, dtype=np.int64)) % 10
    check = pc.check_value(digits)
    ok = check < 10
    text = [f"{c:011d}" for c in (first10[ok] * 10 + check[ok]).tolist()]
    return np.array([f"{t[:6]}-{t[6:]}" for t in text])


def test_enumerating_every_code_reverses_pseudonyms_only_with_the_key() -> None:
    """Why the key is the secret.

    About 200,000 valid personal codes (all codes of 220 birth dates) are enumerated, as an
    attacker can (there are only ~2 million valid codes in all). The "published" pseudonyms
    of 2,000 real persons among them (key A) are matched against the whole enumeration
    hashed three ways: with the right key A every pseudonym is re-identified, correctly; with
    a wrong key B, or with a plain unkeyed SHA-256 of the code (either spelling, any
    truncation), not a single one is.
    """
    t0 = time.perf_counter()
    candidates = enumerate_legacy_codes("1971-03-01", 220)
    assert candidates.size > 195_000 and np.unique(candidates).size == candidates.size
    assert pc.is_valid(candidates).all()  # the enumeration is exactly what an attacker needs
    rng = np.random.default_rng(2025)
    real = candidates[rng.choice(candidates.size, 2_000, replace=False)]
    key_a, key_b = PseudonymKey.generate(), PseudonymKey.generate()
    published = pseudonymise(pl.Series("pc", real), key_a, "person").to_list()
    assert len(set(published)) == 2_000

    def linked(table: dict[str, str]) -> dict[str, str]:
        return {p: table[p] for p in published if p in table}

    everyone = pl.Series("pc", candidates)
    with_a = dict(zip(pseudonymise(everyone, key_a, "person").to_list(), candidates.tolist(),
                      strict=True))
    with_b = dict(zip(pseudonymise(everyone, key_b, "person").to_list(), candidates.tolist(),
                      strict=True))
    plain: dict[str, str] = {}
    for code in candidates.tolist():
        for spelling in (code, code.replace("-", "")):
            digest = hashlib.sha256(spelling.encode()).hexdigest()
            plain[digest] = plain["P" + digest[:32]] = code

    assert linked(with_a) == dict(zip(published, real.tolist(), strict=True))  # all 2,000
    assert linked(with_b) == {}
    assert linked(plain) == {}
    assert not {p[1:] for p in published} & {d[:32] for d in plain}
    elapsed = time.perf_counter() - t0  # ~3 s alone on the 2-core machine; margin for load
    assert elapsed < 30, f"enumeration test took {elapsed:.1f} s"


def test_pseudonymise_distinct_matches_pseudonymise() -> None:
    """The building block of the ingest's encoded columns gives the same pseudonyms,
    also for raw values that normalise alike."""
    raw = pl.Series("code", [HAND_EXAMPLE, HAND_EXAMPLE.replace("-", ""), " 120785 12347",
                             "32" + "1" * 9, "not a code"])
    for domain in DOMAINS:
        got = pseudonym_module.pseudonymise_distinct(raw, KEY, domain)
        assert got.name == "code"
        assert got.to_list() == pseudonymise(raw, KEY, domain).to_list()
    assert pseudonym_module.pseudonymise_distinct(raw.head(0), KEY, "person").len() == 0
