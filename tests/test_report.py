"""The evaluator report (`impact report`): self-contained, deterministic, disclosure-safe,
accessible, bilingual; opened in headless Chromium.

The browser test needs Debian's ``chromium`` (``/usr/bin/chromium``) and Playwright for
Python (pinned in the dev extras; its own browser download is never used). Without them it
is skipped, unless ``IMPACT_REQUIRE_BROWSER=1`` (set by ``.ci/run``), when it fails. Its
full-page screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from impact import cli
from impact.report import render_report, write_report
from impact.report.i18n import fmt_effect, fmt_int, fmt_value

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("IMPACT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: XML namespace names inside the SVG figures: identifiers, never fetched
SVG_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


@pytest.fixture(scope="module")
def report_file(publication: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the session's publication, written once for this module."""
    return write_report(publication, tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module")
def html(report_file: Path) -> str:
    return report_file.read_text(encoding="utf-8")


class _Outline(HTMLParser):
    """Headings, images, tables and their captions, header cells, lang-tagged elements."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.images: list[dict[str, str | None]] = []
        self.tables = 0
        self.captions = 0
        self.th_without_scope = 0
        self.lang: dict[str, int] = {}
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "img":
            self.images.append(a)
        if tag == "table":
            self.tables += 1
        if tag == "caption":
            self.captions += 1
        if tag == "th" and a.get("scope") not in ("col", "row", "rowgroup", "colgroup"):
            self.th_without_scope += 1
        if "lang" in a and tag != "html":
            self.lang[str(a["lang"])] = self.lang.get(str(a["lang"]), 0) + 1
        for key in ("src", "href", "action", "poster", "data"):
            if a.get(key):
                self.urls.append(str(a[key]))


def _outline(text: str) -> _Outline:
    parser = _Outline()
    parser.feed(text)
    return parser


def _svgs(text: str) -> list[str]:
    return [base64.b64decode(m).decode("utf-8")
            for m in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', text)]


# --------------------------------------------------------------------------- the page


def test_rendering_is_deterministic(publication: Path, html: str) -> None:
    assert render_report(publication) == html  # byte-identical (write_report made `html`)


def test_no_external_resources(html: str) -> None:
    assert not re.search(r"https?://", html)
    assert "//" not in "".join(_outline(html).urls).replace("data:", "")
    outline = _outline(html)
    for url in outline.urls:
        assert url.startswith(("data:image/svg+xml;base64,", "#")), url[:80]
    assert "<link" not in html and "@import" not in html and "url(" not in html
    svgs = _svgs(html)
    assert len(svgs) >= 9
    for svg in svgs:
        found = set(re.findall(r"https?://[^\s\"'<>)]+", svg))
        assert found <= SVG_NAMESPACES, found - SVG_NAMESPACES
        assert "<!DOCTYPE" not in svg and "<metadata" not in svg
    assert "default-src 'none'" in html  # the page forbids loading anything at all


def test_structure_is_accessible(html: str) -> None:
    o = _outline(html)
    assert o.headings.count(1) == 1 and o.headings[0] == 1
    for before, after in zip(o.headings, o.headings[1:], strict=False):
        assert after <= before + 1, "heading levels must not skip"
    assert len(o.images) >= 9
    for img in o.images:
        assert (img.get("alt") or "").strip() and len(img["alt"]) > 40
        assert (img.get("data-alt-lv") or "").strip()
        assert int(img["width"]) > 0 and int(img["height"]) > 0
    assert o.tables >= 10 and o.captions == o.tables
    assert o.th_without_scope == 0
    assert '<html lang="en"' in html


def test_both_languages_present(html: str) -> None:
    o = _outline(html)
    assert o.lang.get("lv", 0) > 100
    assert html.count('class="i-en') == html.count('class="i-lv')
    for en, lv in (("Headline results", "Galvenie rezultāti"),
                   ("Methodology and assumptions", "Metodoloģija un pieņēmumi"),
                   ("statistical twins", "statistiskajiem dvīņiem"),
                   ("Disclosure control", "Konfidencialitātes kontrole")):
        assert en in html and lv in html


def test_contents(publication: Path, html: str) -> None:
    m = json.loads((publication / "manifest.json").read_text(encoding="utf-8"))
    for value in (m["run_id"], m["data_vintage"], m["code_version"], m["config_hash"]):
        assert value in html
    assert "files match the SHA-256 checksums" in html
    ind = pl.read_parquet(publication / "indicators.parquet")
    head = ind.filter((pl.col("indicator") == "eecr06_any") & (pl.col("dimension") == "all"))
    row = head.row(0, named=True)
    if not row["suppressed"]:
        assert fmt_value(row["participants"], "share") in html
        assert fmt_effect(row["net"], "share") in html
    for section in ("headline", "event-study", "income-curves", "twins", "subgroups",
                    "career", "indicators", "method", "data-quality", "disclosure"):
        assert f'<section id="{section}"' in html
    for phrase in ("months after leaving", "uniform band",
                   "Holm-adjusted p", "Kaplan-Meier", "selection on unobservables",
                   "parallel trends", "No anticipation", "Censoring", "reuse",
                   "Data quality", "Intruder audit"):
        assert phrase in html, phrase
    # the coarser passes of the twins, as configured, in both languages
    assert m["control_group"]["settings"]["coarsen"] == [["region_code"], ["job_recency"]]
    assert ("matched again with fewer exact characteristics: without region; then without "
            "months since the last job.") in html
    assert "bez pazīmes reģions; pēc tam bez pazīmes mēneši kopš pēdējā darba." in html


def _planted(publication: Path, root: Path, values: dict[str, float | int] | None) -> Path:
    """A copy of ``publication`` where a few cells are suppressed; with ``values`` those
    cells still carry (planted) numbers, which the report must never show."""
    rid = publication.resolve().name
    out = root / rid
    shutil.copytree(publication.resolve(), out)
    t = pl.read_parquet(out / "indicators.parquet")
    target = (((pl.col("indicator") == "eecr06_any") & pl.col("dimension").is_in(["all", "sex"]))
              | ((pl.col("indicator") == "earnings_real_h12") & (pl.col("dimension") == "sex")))
    cols = {"suppressed": pl.when(target).then(True).otherwise(pl.col("suppressed")),
            "suppression_reason": pl.when(target).then(pl.lit("primary:threshold"))
            .otherwise(pl.col("suppression_reason"))}
    for c, v in (values or {}).items():
        cols[c] = pl.when(target).then(pl.lit(v, dtype=t.schema[c])).otherwise(pl.col(c))
    if values is None:
        for c in ("participants", "twins", "net", "ci_low", "ci_high", "n_participants"):
            cols[c] = pl.when(target).then(None).otherwise(pl.col(c))
    t.with_columns(**cols).write_parquet(out / "indicators.parquet")
    return out


def test_suppressed_values_are_never_shown(publication: Path, tmp_path: Path) -> None:
    planted = {"participants": 93571.35, "twins": 81937.21, "net": 77177.7,
               "ci_low": 66166.6, "ci_high": 88188.8, "n_participants": 97531,
               "p_value": 0.0123456, "p_holm": 0.0234567}
    with_values = render_report(_planted(publication, tmp_path / "a", planted))
    blanked = render_report(_planted(publication, tmp_path / "b", None))
    for unit in ("share", "EUR/month (real)"):
        for lang in ("en", "lv"):
            for c in ("participants", "twins"):
                assert fmt_value(planted[c], unit, lang) not in with_values
            for c in ("net", "ci_low", "ci_high"):
                assert fmt_effect(planted[c], unit, lang) not in with_values
    for raw in ("93571", "81937", "77177", "77178", "66166", "66167", "88188", "88189",
                "97531", fmt_int(97531), "0.0123", "0.0234"):
        assert raw not in with_values, raw
    # the headline says the overall cell is suppressed; the dash and its footnote are shown
    assert "suppressed by disclosure control" in with_values
    assert 'class="num supp"' in with_values
    # planted values change nothing: same figures, same text (but for the integrity line)
    assert _svgs(with_values) == _svgs(blanked)

    def strip(text: str) -> str:
        return re.sub(r"<dt>.{0,200}Integrity.*?</dd>", "", text, count=1, flags=re.S)

    assert strip(with_values) == strip(blanked)
    assert "WARNING" in with_values  # the altered copy no longer matches its manifest


def test_cli_report(publication: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> None:
    runner = CliRunner()
    out = tmp_path / "custom" / "r.html"
    result = runner.invoke(cli.impact, ["report", "--publication", str(publication),
                                        "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # defaults: the config's data.publish/latest -> data.root/reports/<run_id>/report.html
    # (the report itself was just tested: a stand-in writer keeps this test fast)
    written: list[tuple[Path, Path]] = []

    def fake_write(pub: Path, out: Path) -> Path:
        written.append((pub, out))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("<!DOCTYPE html>", encoding="utf-8")
        return out

    monkeypatch.setattr("impact.report.write_report", fake_write)
    rid = publication.resolve().name
    shutil.copytree(publication.resolve(), tmp_path / "data" / "publish" / rid)
    (tmp_path / "data" / "publish" / "latest").symlink_to(rid, target_is_directory=True)
    config = tmp_path / "eval.yaml"
    config.write_text(f"data:\n  root: {tmp_path / 'data'}\n", encoding="utf-8")
    result = runner.invoke(cli.impact, ["report", "--config", str(config)])
    assert result.exit_code == 0, result.output
    expected = tmp_path / "data" / "reports" / rid / "report.html"
    assert result.output.strip().splitlines()[-1] == str(expected)
    assert expected.is_file()
    assert written == [(tmp_path / "data" / "publish" / rid, expected)]
    empty = tmp_path / "empty.yaml"
    empty.write_text(f"data:\n  root: {tmp_path / 'nothing'}\n", encoding="utf-8")
    result = runner.invoke(cli.impact, ["report", "--config", str(empty)])
    assert result.exit_code == cli.EXIT_FAILED and "no publication" in result.output


# --------------------------------------------------------------------------- the browser


def _browser_or_skip() -> object:
    required = os.environ.get("IMPACT_REQUIRE_BROWSER") == "1"
    why = None
    if not CHROMIUM.is_file():
        why = f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            why = "Playwright for Python is not installed (pip install -e '.[dev]')"
        else:
            return sync_playwright
    if required:
        pytest.fail(f"IMPACT_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


def test_report_in_headless_chromium(report_file: Path) -> None:
    sync_playwright = _browser_or_skip()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = report_file.resolve().as_uri()
    with sync_playwright() as p:  # type: ignore[operator]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            errors: list[str] = []
            requests: list[str] = []
            failed: list[str] = []
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page.route(re.compile(r"^(?!file:|data:)"), lambda route: (
                failed.append(f"blocked {route.request.url}"), route.abort()))
            page.goto(url, wait_until="load")
            page.wait_for_function("Array.from(document.images).every(i => i.complete)")

            # figures: every image decoded and laid out with a non-zero size
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.naturalWidth, e.naturalHeight, "
                "e.getBoundingClientRect().width, e.getBoundingClientRect().height, e.alt])")
            assert len(sizes) >= 9
            for nw, nh, w, h, alt in sizes:
                assert nw > 0 and nh > 0 and w > 0 and h > 0, (nw, nh, w, h, alt[:60])
                assert alt.strip()
            assert page.locator("h1").count() == 1
            assert page.locator("h1").inner_text().startswith("Individual Learning Accounts")
            assert page.locator("table").count() == page.locator("table > caption").count()

            # English first
            assert page.evaluate("document.documentElement.lang") == "en"
            headline = page.locator("#headline-h")
            assert headline.locator(".i-en").is_visible()
            assert not headline.locator(".i-lv").is_visible()
            page.screenshot(path=str(ARTIFACTS / "report_en.png"), full_page=True)

            # the language switch
            page.get_by_role("button", name="Latviešu").click()
            assert page.evaluate("document.documentElement.lang") == "lv"
            assert headline.locator(".i-lv").is_visible()
            assert not headline.locator(".i-en").is_visible()
            assert headline.inner_text().strip() == "Galvenie rezultāti"
            assert page.title().startswith("Individuālo mācību kontu")
            alts = page.eval_on_selector_all(
                "img", "els => els.every(e => e.alt === e.getAttribute('data-alt-lv'))")
            assert alts
            assert page.get_by_role("button", name="Latviešu").get_attribute(
                "aria-pressed") == "true"
            page.screenshot(path=str(ARTIFACTS / "report_lv.png"), full_page=False)
            page.get_by_role("button", name="English").click()
            assert headline.inner_text().strip() == "Headline results"

            assert errors == []
            assert failed == []
            assert [u for u in requests if not u.startswith("data:")] == [url]

            # without JavaScript: both languages readable, English first, no switch shown
            ctx = browser.new_context(java_script_enabled=False)
            try:
                plain = ctx.new_page()
                plain.goto(url, wait_until="load")
                h = plain.locator("#headline-h")
                assert h.locator(".i-en").is_visible() and h.locator(".i-lv").is_visible()
                assert not plain.locator(".langswitch").is_visible()
            finally:
                ctx.close()
        finally:
            browser.close()
    assert (ARTIFACTS / "report_en.png").stat().st_size > 10_000
