"""Tests for impact.personal_code (Latvian personas kods).

The oracle below is an independent, deliberately naive scalar implementation (Python
``datetime.date`` for the calendar, a plain loop for the checksum). The vectorised
functions and the polars expression are checked against it and against each other.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impact import personal_code as pc

WEIGHTS = (1, 6, 3, 7, 9, 10, 5, 8, 4, 2)

# Hand-computed example (legacy format), born 12 July 1985, century digit 1, serial 234:
#   digits   1  2  0  7  8  5  1  2  3  4
#   weights  1  6  3  7  9 10  5  8  4  2
#   products 1 12  0 49 72 50  5 16 12  8   -> sum 225
#   (1101 - 225) mod 11 = 876 mod 11 = 876 - 11*79 = 7      -> code 120785-12347
HAND_EXAMPLE = "120785-12347"
# python-stdnum's documented example (stdnum.lv.pvn): 16 Nov 1975
#   1*1+6*6+1*3+1*7+7*9+5*10+1*5+9*8+9*4+9*2 = 291; (1101-291) mod 11 = 810 mod 11 = 7
STDNUM_EXAMPLE = "161175-19997"


def oracle(code: object) -> bool:
    """Scalar reference implementation of the validity rules."""
    if not isinstance(code, str):
        return False
    s = re.sub(r"[ \t\n\r\f\v-]", "", code)
    if len(s) != 11 or any(ch not in "0123456789" for ch in s):
        return False
    if s.startswith("32"):
        return True
    d = [int(ch) for ch in s]
    if d[6] > 2:
        return False
    try:
        dt.date(1800 + 100 * d[6] + int(s[4:6]), int(s[2:4]), int(s[0:2]))
    except ValueError:
        return False
    k = (1101 - sum(w * x for w, x in zip(WEIGHTS, d[:10], strict=True))) % 11
    return k != 10 and k == d[10]


def oracle_make(day: dt.date, serial: int) -> str | None:
    """Build a legacy code by hand; None when the check value would be 10."""
    prefix = f"{day:%d%m%y}{day.year // 100 - 18}{serial:03d}"
    k = (1101 - sum(w * int(x) for w, x in zip(WEIGHTS, prefix, strict=True))) % 11
    return None if k == 10 else f"{prefix[:6]}-{prefix[6:]}{k}"


def compact_int(codes: np.ndarray) -> np.ndarray:
    return np.char.replace(codes.astype(str), "-", "").astype(np.int64)


def as_codes(values: np.ndarray) -> np.ndarray:
    return np.char.zfill(values.astype(str), 11)


# --------------------------------------------------------------------------- examples
def test_hand_computed_examples_are_valid():
    assert pc.is_valid([HAND_EXAMPLE, STDNUM_EXAMPLE, "12078512347", " 120785-12347\n"]).all()
    assert oracle(HAND_EXAMPLE) and oracle(STDNUM_EXAMPLE)
    # every other check digit is wrong
    wrong = [HAND_EXAMPLE[:-1] + str(k) for k in range(10) if k != 7]
    assert not pc.is_valid(wrong).any()
    assert pc.check_value(np.array([[1, 2, 0, 7, 8, 5, 1, 2, 3, 4]]))[0] == 7


def test_birth_date_of_examples():
    got = pc.birth_date([HAND_EXAMPLE, STDNUM_EXAMPLE, "32123456789", None, "120785-12346"])
    expected = np.array(["1985-07-12", "1975-11-16", "NaT", "NaT", "NaT"], dtype="datetime64[D]")
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        ("", False),
        ("   ", False),
        ("32", False),
        ("32000000000", True),  # new format: prefix and 11 digits only
        ("320000-00000", True),
        ("330000-00000", False),  # day 33, century 0: neither format
        ("1207851234", False),  # 10 digits
        ("120785123470", False),  # 12 digits
        ("12O785-12347", False),  # letter O
        ("١٢٠٧٨٥١٢٣٤٧", False),  # Arabic-Indic digits are not ASCII digits
        ("120785\u00a012347", False),  # no-break space is not stripped
        ("120785-12347\x00", False),
        ("120785--12347", True),  # every hyphen/whitespace is removed by normalisation
    ],
)
def test_edge_cases(value, expected):
    assert pc.is_valid([value])[0] == expected
    assert oracle(value) == expected


def _with_check(first10: str) -> str | None:
    """Complete ten digits with their check digit (None when the check value is 10)."""
    k = (1101 - sum(w * int(x) for w, x in zip(WEIGHTS, first10, strict=True))) % 11
    return None if k == 10 else first10 + str(k)


@pytest.mark.parametrize(
    ("first7", "valid"),
    [
        ("2902002", True),  # 29 Feb 2000: leap year (divisible by 400)
        ("2902001", False),  # 29 Feb 1900: not a leap year
        ("2902000", False),  # 29 Feb 1800: not a leap year
        ("2902961", True),  # 29 Feb 1996
        ("2902971", False),  # 29 Feb 1997
        ("3104851", False),  # 31 April
        ("3112851", True),  # 31 December
        ("0113851", False),  # month 13
        ("0100851", False),  # month 00
        ("0001851", False),  # day 00
        ("0101853", False),  # century digit 3
        ("0101859", False),  # century digit 9
    ],
)
def test_calendar_rules_with_correct_check_digit(first7, valid):
    # the checksum is right, so only the calendar rule decides
    codes = [c for s in range(40) if (c := _with_check(f"{first7}{s:03d}"))]
    assert len(codes) > 30
    assert (pc.is_valid(codes) == valid).all()
    assert all(oracle(c) == valid for c in codes)


def test_check_value_ten_is_never_valid():
    # find prefixes whose check value is 10; no final digit makes them valid
    rng = np.random.default_rng(3)
    codes = pc.generate_legacy(np.full(200, np.datetime64("1990-03-15")), rng)
    ten = []
    for serial in range(1000):
        first10 = f"1503901{serial:03d}"
        if pc.check_value(np.array([[int(c) for c in first10]]))[0] == 10:
            ten.append(first10)
    assert ten, "some serials must give check value 10"
    candidates = [p + str(k) for p in ten[:5] for k in range(10)]
    assert not pc.is_valid(candidates).any()
    # and the generator never used such a serial
    assert not set(c.replace("-", "")[:10] for c in codes) & set(ten)


# --------------------------------------------------------------------------- generation
def test_generate_legacy_valid_unique_and_round_trips():
    rng = np.random.default_rng(11)
    days = np.datetime64("1800-01-01") + rng.integers(0, 300 * 365, 50_000)
    days = np.concatenate(
        [
            days,
            np.array(
                ["2000-02-29", "1904-02-29", "2096-02-29", "1800-01-01", "2099-12-31"],
                dtype="datetime64[D]",
            ),
        ]
    )
    codes = pc.generate_legacy(days, rng)
    assert codes.shape == days.shape
    assert codes.dtype.kind == "U"
    assert np.unique(codes).size == codes.size
    assert pc.is_valid(codes).all()
    assert all(oracle(c) for c in codes[:2000])
    assert all(c[6] == "-" and len(c) == 12 for c in codes[:2000])
    np.testing.assert_array_equal(pc.birth_date(codes), days)


def test_generate_legacy_dense_dates_exercise_redraws_and_fill():
    rng = np.random.default_rng(5)
    # 900 people on one date (capacity is about 909) and 400 on each of ten others
    days = np.concatenate(
        [
            np.full(900, np.datetime64("1984-06-23")),
            np.repeat(np.datetime64("1971-01-01") + np.arange(10), 400),
        ]
    )
    rng.shuffle(days)
    codes = pc.generate_legacy(days, rng)
    assert np.unique(codes).size == codes.size
    assert pc.is_valid(codes).all()
    np.testing.assert_array_equal(pc.birth_date(codes), days)


def test_generate_legacy_capacity_and_range_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="share birth date"):
        pc.generate_legacy(np.full(1000, np.datetime64("1980-05-05")), rng)
    with pytest.raises(ValueError, match="1800-2099"):
        pc.generate_legacy(np.array(["1799-12-31"], dtype="datetime64[D]"), rng)
    with pytest.raises(ValueError, match="NaT"):
        pc.generate_legacy(np.array(["NaT"], dtype="datetime64[D]"), rng)
    assert pc.generate_legacy(np.array([], dtype="datetime64[D]"), rng).size == 0


def test_generation_is_deterministic_given_the_seed():
    days = np.datetime64("1960-01-01") + np.arange(0, 20_000, 3)
    a = pc.generate_legacy(days, np.random.default_rng(42))
    b = pc.generate_legacy(days, np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        pc.generate_new(100, np.random.default_rng(1)),
        pc.generate_new(100, np.random.default_rng(1)),
    )


def test_generate_new_valid_unique_and_respects_exclude():
    a = pc.generate_new(20_000, np.random.default_rng(9))
    assert np.unique(a).size == a.size
    assert pc.is_valid(a).all()
    assert all(c.startswith("32") and c[6] == "-" for c in a[:1000])
    assert np.isnat(pc.birth_date(a[:10])).all()
    # same seed would redraw exactly the excluded codes: every one must be redrawn
    b = pc.generate_new(20_000, np.random.default_rng(9), exclude=a)
    assert not set(a) & set(b)
    assert np.unique(b).size == b.size
    # exclusion works on compact codes and mixed-format lists too
    c = pc.generate_new(
        5,
        np.random.default_rng(9),
        exclude=[x.replace("-", "") for x in a[:5]] + [None, HAND_EXAMPLE],
    )
    assert not set(c) & set(a[:5])
    assert pc.generate_new(0, np.random.default_rng(0)).size == 0


def test_formats_are_disjoint():
    rng = np.random.default_rng(2)
    legacy = pc.generate_legacy(np.datetime64("1950-01-01") + rng.integers(0, 20_000, 5000), rng)
    new = pc.generate_new(5000, rng)
    assert not any(c.startswith("32") for c in legacy)
    assert not set(legacy) & set(new)


# --------------------------------------------------------------------------- error detection
def test_every_single_digit_substitution_is_detected():
    rng = np.random.default_rng(7)
    codes = pc.generate_legacy(np.datetime64("1940-01-01") + rng.integers(0, 30_000, 300), rng)
    base = compact_int(codes)
    mutated = []
    for pos in range(11):
        place = 10 ** (10 - pos)
        old = (base // place) % 10
        for delta in range(1, 10):
            new = (old + delta) % 10
            mutated.append(base + (new - old) * place)
    mutated = as_codes(np.concatenate(mutated))
    assert mutated.size == 300 * 11 * 9
    valid = pc.is_valid(mutated)
    # The checksum catches every substitution (all weights are non-zero mod 11). The one,
    # documented, exception: a change that makes the code start with "32" turns it into a
    # syntactically valid new-format code, which has no checksum to fail.
    becomes_new = np.char.startswith(mutated, "32")
    assert becomes_new.any()
    assert not valid[~becomes_new].any()
    assert valid[becomes_new].all()


def test_adjacent_transpositions_in_first_ten_digits_are_detected():
    rng = np.random.default_rng(8)
    codes = pc.generate_legacy(np.datetime64("1940-01-01") + rng.integers(0, 30_000, 500), rng)
    compact = [c.replace("-", "") for c in codes]
    swapped = []
    for c in compact:
        for i in range(9):  # positions (i, i+1) within the first ten digits
            if c[i] != c[i + 1]:
                swapped.append(c[:i] + c[i + 1] + c[i] + c[i + 2 :])
    assert swapped
    swapped = np.array(swapped)
    becomes_new = np.char.startswith(swapped, "32")  # same exception as for substitutions
    assert not pc.is_valid(swapped[~becomes_new]).any()


def test_corrupt_check_digit():
    rng = np.random.default_rng(4)
    codes = pc.generate_legacy(np.datetime64("1970-01-01") + rng.integers(0, 15_000, 2000), rng)
    bad = pc.corrupt_check_digit(codes, rng)
    assert not pc.is_valid(bad).any()
    assert all(b[:-1] == c[:-1] and b[-1] != c[-1] for b, c in zip(bad, codes, strict=True))
    # accepts compact input too
    assert not pc.is_valid(pc.corrupt_check_digit([HAND_EXAMPLE.replace("-", "")], rng))[0]
    with pytest.raises(ValueError):
        pc.corrupt_check_digit(pc.generate_new(3, rng), rng)
    with pytest.raises(ValueError):
        pc.corrupt_check_digit(["120785-12346"], rng)


# --------------------------------------------------------------------------- input types
def test_input_types_and_normalise():
    values = [HAND_EXAMPLE, None, "x", "32000000000"]
    expected = np.array([True, False, False, True])
    np.testing.assert_array_equal(pc.is_valid(values), expected)
    np.testing.assert_array_equal(pc.is_valid(np.array(values, dtype=object)), expected)
    np.testing.assert_array_equal(pc.is_valid(pl.Series(values)), expected)
    np.testing.assert_array_equal(pc.is_valid(np.array([HAND_EXAMPLE, "x"])), [True, False])
    assert pc.is_valid([]).size == 0
    assert not pc.is_valid(pl.Series([None, None])).any()
    with pytest.raises(TypeError):
        pc.is_valid([12078512347])
    with pytest.raises(TypeError):
        pc.is_valid(pl.Series([1, 2]))
    with pytest.raises(TypeError):
        pc.is_valid(np.array([12078512347]))
    norm = pc.normalise([" 120785-12347 ", "12 07\t85-12347", None])
    assert list(norm) == ["12078512347", "12078512347", None]
    df = pl.DataFrame({"c": [" 120785-12347 ", None]})
    assert df.select(pc.normalise_expr("c"))["c"].to_list() == ["12078512347", None]


def test_expressions_work_in_frames_and_lazy_queries():
    rng = np.random.default_rng(12)
    legacy = pc.generate_legacy(np.datetime64("1950-01-01") + rng.integers(0, 20_000, 1000), rng)
    codes = np.concatenate([legacy, pc.corrupt_check_digit(legacy[:100], rng)])
    df = pl.DataFrame({"code": codes})
    eager = df.select(ok=pc.valid_expr("code"), born=pc.birth_date_expr(pl.col("code")))
    lazy = df.lazy().select(ok=pc.valid_expr("code"), born=pc.birth_date_expr("code")).collect()
    assert eager.equals(lazy)
    assert eager["ok"].dtype == pl.Boolean and eager["born"].dtype == pl.Date
    assert eager["ok"].sum() == 1000
    assert eager["born"].null_count() == 100


# --------------------------------------------------------------------------- properties
_ALPHABET = "0123456789- \t\n32aO\u0663\x00\u00a0+"


@st.composite
def near_valid(draw) -> str:
    """A valid code (either format), then optionally mutated."""
    if draw(st.booleans()):
        day = draw(st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2099, 12, 31)))
        code = oracle_make(day, draw(st.integers(0, 999))) or "120785-12347"
    else:
        code = "32" + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=9, max_size=9)))
    op = draw(st.sampled_from(["keep", "sub", "ins", "del", "strip", "pad"]))
    i = draw(st.integers(0, len(code) - 1))
    ch = draw(st.sampled_from(_ALPHABET))
    if op == "sub":
        code = code[:i] + ch + code[i + 1 :]
    elif op == "ins":
        code = code[:i] + ch + code[i:]
    elif op == "del":
        code = code[:i] + code[i + 1 :]
    elif op == "strip":
        code = code.replace("-", "")
    elif op == "pad":
        code = f" {code}\t"
    return code


_values = st.one_of(
    st.none(),
    st.text(max_size=16),
    st.text(alphabet=_ALPHABET, min_size=9, max_size=14),
    near_valid(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_values, min_size=1, max_size=40))
def test_is_valid_agrees_with_valid_expr_and_oracle(values):
    via_numpy = pc.is_valid(values)
    via_expr = (
        pl.DataFrame({"c": values}, schema={"c": pl.String})
        .select(pc.valid_expr("c"))["c"]
        .to_numpy()
    )
    expected = np.array([oracle(v) for v in values])
    np.testing.assert_array_equal(via_numpy, via_expr)
    np.testing.assert_array_equal(via_numpy, expected)


@settings(max_examples=200, deadline=None)
@given(
    st.dates(min_value=dt.date(1800, 1, 1), max_value=dt.date(2099, 12, 31)), st.integers(0, 2**32)
)
def test_birth_date_round_trip_property(day, seed):
    code = pc.generate_legacy(np.array([day], dtype="datetime64[D]"), np.random.default_rng(seed))
    assert oracle(code[0])
    assert pc.birth_date(code)[0] == np.datetime64(day, "D")


# --------------------------------------------------------------------------- scale
def test_generate_1_2_million_legacy_codes_quickly():
    rng = np.random.default_rng(2024)
    days = np.datetime64("1955-01-01") + rng.integers(0, 52 * 365, 1_200_000)
    t0 = time.perf_counter()
    codes = pc.generate_legacy(days, rng)
    elapsed = time.perf_counter() - t0
    print(f"generate_legacy: 1.2 M codes in {elapsed:.2f} s")
    assert elapsed < 20  # typically ~2 s; generous for slow CI machines
    assert np.unique(codes).size == codes.size
    assert pc.is_valid(codes).all()
