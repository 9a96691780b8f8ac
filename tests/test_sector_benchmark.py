"""Sector benchmark: participants' paths against their NACE division's average, checked by
hand on a tiny panel and by a direct (row-by-row) computation on the session fixture."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from impact.sector_benchmark import division_month_means, sector_benchmark

# --------------------------------------------------------------------------- tiny panel
#
# months 2023-01 (t = 0) .. 2024-12 (t = 23)
# division 10: X1 earns 1000 + 10 t, X2 2000 + 10 t; participant A (start 2024-01, t = 12,
#   leaves 2024-03) earns 1500 before and 1800 from the start
# division 62: Y1 earns 3000; participant B (start 2024-04, t = 15, leaves 2024-04) earns
#   3000 until t = 14, then has no job
# C: participant (start 2024-01) without a job in 2023-12: no division at entry
# D: never employed, not a participant


def _month(t: int) -> date:
    return date(2023 + t // 12, t % 12 + 1, 1)


def _tiny(root: Path) -> pl.DataFrame:
    rows = []

    def add(code: str, pid: int, t: int, earn: float, div: str | None) -> None:
        rows.append({"person_code": code, "pid": pid, "month": _month(t),
                     "employed": div is not None, "earnings_real": earn if div else 0.0,
                     "nace_division": div})

    for t in range(24):
        add("X1", 0, t, 1000 + 10 * t, "10")
        add("X2", 1, t, 2000 + 10 * t, "10")
        add("A", 2, t, 1500 if t < 12 else 1800, "10")
        add("Y1", 3, t, 3000, "62")
        add("B", 4, t, 3000, "62" if t < 15 else None)
        add("C", 5, t, 900, None if t == 11 else "10")
        add("D", 6, t, 0, None)
    df = pl.DataFrame(rows)
    for year in (2023, 2024):
        part = root / f"year={year}"
        part.mkdir(parents=True)
        df.filter(pl.col("month").dt.year() == year).write_parquet(part / "part-0.parquet")
    return pl.DataFrame({
        "person_code": ["A", "B", "C"],
        "cohort": [_month(12), _month(15), _month(12)],
        "end_month": [_month(14), _month(15), _month(12)],
    })


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    root = tmp_path_factory.mktemp("sector_panel")
    return root, _tiny(root)


def _row(res: pl.DataFrame, series: str, e: int) -> dict:
    return res.filter((pl.col("series") == series) & (pl.col("event_time") == e)).row(
        0, named=True)


def _r10(t: int) -> float:  # division 10's mean: X1, X2, A and C (C is in division 10 but t=11)
    a = 1500 if t < 12 else 1800
    people = [1000 + 10 * t, 2000 + 10 * t, a] + ([] if t == 11 else [900])
    return sum(people) / len(people)


def test_tiny_panel_by_hand(tiny) -> None:
    root, treatment = tiny
    res = sector_benchmark(root, treatment, event_times=[-3, 0, 6, 36])
    assert res["n_participants"].unique().to_list() == [2]
    assert res["n_no_division"].unique().to_list() == [1]
    # A: baselines over t = 0..11, B: over t = 3..14
    base_r10 = sum(_r10(t) for t in range(12)) / 12
    r = _row(res, "earnings_real", 6)  # A at t = 18, B at t = 21
    assert r["n"] == 2
    assert r["participants"] == pytest.approx((1800 + 0) / 2)
    assert r["reference"] == pytest.approx((_r10(18) + 3000) / 2)
    dy = [1800 - 1500, 0 - 3000]
    dr = [_r10(18) - base_r10, 3000 - 3000]
    dd = [a - b for a, b in zip(dy, dr, strict=True)]
    assert r["participants_change"] == pytest.approx(sum(dy) / 2)
    assert r["reference_change"] == pytest.approx(sum(dr) / 2)
    assert r["sector_adjusted"] == pytest.approx(sum(dd) / 2)
    assert r["se_adjusted"] == pytest.approx(abs(dd[0] - dd[1]) / 2)  # sd/sqrt(2), n = 2
    assert r["ci_low"] == pytest.approx(sum(dd) / 2 - 1.959963984540054 * abs(dd[0] - dd[1]) / 2)
    e = _row(res, "employed", 6)
    assert e["participants"] == pytest.approx(0.5)
    assert e["participants_change"] == pytest.approx(-0.5)
    assert e["reference"] is None and e["sector_adjusted"] is None
    # pre-period: A at t = 9, B at t = 12 (both in their baselines)
    r = _row(res, "earnings_real", -3)
    assert r["participants_change"] == pytest.approx(0.0)
    assert r["reference_change"] == pytest.approx((_r10(9) - base_r10 + 0) / 2)
    # beyond the data: nobody observed
    r = _row(res, "earnings_real", 36)
    assert r["n"] == 0 and r["participants"] is None


def test_tiny_panel_end_clock(tiny) -> None:
    root, treatment = tiny
    res = sector_benchmark(root, treatment, event_times=[3], clock="end")
    r = _row(res, "earnings_real", 3)  # A at t = 17, B at t = 18; baselines as on the start clock
    base_r10 = sum(_r10(t) for t in range(12)) / 12
    assert r["clock"] == "end" and r["n"] == 2
    assert r["sector_adjusted"] == pytest.approx(
        ((300 - (_r10(17) - base_r10)) + (-3000 - 0)) / 2)


def test_division_month_means(tiny) -> None:
    root, _ = tiny
    d = division_month_means(root)
    t = 18
    got = d.filter((pl.col("nace_division") == "10") & (pl.col("month_no") == 2024 * 12 + 6))
    assert got["reference"][0] == pytest.approx(_r10(t))
    assert got["n_employees"][0] == 4
    assert d.filter(pl.col("nace_division") == "62")["reference"].to_list() == [3000.0] * 24


def test_rejects_a_baseline_after_the_start(tiny) -> None:
    root, treatment = tiny
    with pytest.raises(ValueError, match="pre-start"):
        sector_benchmark(root, treatment, baseline=(-3, 0))


# --------------------------------------------------------------------------- session fixture


def _direct(panel: pl.DataFrame, treatment: pl.DataFrame, events: list[int]) -> dict:
    """Row-by-row computation of the start-clock benchmark (no shared code)."""
    def mno(d: date) -> int:
        return d.year * 12 + d.month - 1

    earn: dict[str, dict[int, float]] = defaultdict(dict)
    emp: dict[str, dict[int, float]] = defaultdict(dict)
    div: dict[str, dict[int, str | None]] = defaultdict(dict)
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0])
    for code, month, e, y, d in panel.select(
        "person_code", "month", "employed", "earnings_real", "nace_division"
    ).iter_rows():
        t = mno(month)
        if d is not None and e:
            s = sums[(d, t)]
            s[0] += y
            s[1] += 1
        earn[code][t] = y
        emp[code][t] = float(e)
        div[code][t] = d
    ref = {k: v[0] / v[1] for k, v in sums.items()}
    out: dict[tuple[str, int], dict] = {}
    people = []
    for code, cohort in treatment.select("person_code", "cohort").iter_rows():
        g = mno(cohort)
        d = div[code].get(g - 1)
        if d is None:
            continue
        base = [t for t in range(g - 12, g) if t in earn[code]]
        people.append((code, g, d, base))
    for e in events:
        dd, dy, ys, rs, de = [], [], [], [], []
        for code, g, d, base in people:
            t = g + e
            if t not in earn[code] or not base:
                continue
            b_y = np.mean([earn[code][s] for s in base])
            b_r = np.mean([ref[(d, s)] for s in base])
            ys.append(earn[code][t])
            rs.append(ref[(d, t)])
            dy.append(earn[code][t] - b_y)
            dd.append(earn[code][t] - b_y - (ref[(d, t)] - b_r))
            de.append(emp[code][t] - np.mean([emp[code][s] for s in base]))
        out[("earnings_real", e)] = {
            "n": len(dd), "participants": np.mean(ys), "reference": np.mean(rs),
            "participants_change": np.mean(dy), "sector_adjusted": np.mean(dd),
            "se_adjusted": np.std(dd, ddof=1) / math.sqrt(len(dd)),
        }
        out[("employed", e)] = {"n": len(de), "participants_change": np.mean(de),
                                "se_change": np.std(de, ddof=1) / math.sqrt(len(de))}
    return {"n_participants": len(people), **{f"{k[0]}@{k[1]}": v for k, v in out.items()}}


def test_equals_a_direct_computation_on_the_fixture(research) -> None:
    treatment = pl.read_parquet(research.root / "research" / "treatment.parquet")
    events = [-24, -6, 0, 6, 12]
    res = sector_benchmark(research.root / "panel", treatment, event_times=events)
    want = _direct(research.panel, treatment, events)
    assert 0 < want["n_participants"] < treatment.height
    assert res["n_participants"][0] == want["n_participants"]
    assert res["n_no_division"][0] == treatment.height - want["n_participants"]
    for e in events:
        for series in ("earnings_real", "employed"):
            got = _row(res, series, e)
            for k, v in want[f"{series}@{e}"].items():
                # division means are summed in units of 1/1024 EUR (order-independent):
                # each mean moves by < 0.0005 EUR, and so does anything built from them
                fixed = ("reference", "sector_adjusted", "ci_", "se_adj")
                tol = 5e-4 if k.startswith(fixed) else 1e-9
                assert got[k] == pytest.approx(v, rel=1e-9, abs=tol), (series, e, k)
