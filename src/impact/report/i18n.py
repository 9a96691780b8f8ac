"""Bilingual text (English, Latvian) and number formatting for the evaluator report.

Every piece of visible text is a :class:`Tr` pair. In the HTML each pair becomes two sibling
elements tagged ``lang="en" class="i-en"`` and ``lang="lv" class="i-lv"``; the report's
inline script shows one language at a time (English by default; the classes, not the
``lang`` attributes, are what it toggles, so English text quoted inside a Latvian block stays
visible), and without the script both are shown, English first.

Numbers in prose follow the reader's language (``1 234.5`` in English, ``1 234,5`` in
Latvian; a narrow no-break space groups thousands in both). Numbers in tables use the
English decimal point so that a table is printed once.
"""

from __future__ import annotations

import html
import math
from typing import NamedTuple

__all__ = [
    "MINUS",
    "NA",
    "SUPPRESSED",
    "Tr",
    "block",
    "esc",
    "fmt_effect",
    "fmt_int",
    "fmt_num",
    "fmt_p",
    "fmt_value",
    "is_share",
    "span",
    "unit_text",
]

#: typographic minus sign used for negative numbers
MINUS = "\u2212"
#: narrow no-break space: thousands separator, and between a number and "%"
NNBSP = "\u202f"
#: what a suppressed cell shows instead of a value
SUPPRESSED = "\u2013"


class Tr(NamedTuple):
    """One text in English and Latvian (plain text; escaped when rendered)."""

    en: str
    lv: str

    def get(self, lang: str) -> str:
        """The text in ``lang`` (``"en"`` or ``"lv"``)."""
        return self.lv if lang == "lv" else self.en


#: "not applicable" (an empty, unsuppressed cell)
NA = Tr("n/a", "n/p")


def esc(text: object) -> str:
    """HTML-escape ``text`` (quotes included)."""
    return html.escape(str(text), quote=True)


def span(text: Tr, *, raw: bool = False) -> str:
    """Two inline ``<span lang>`` elements, one per language.

    Parameters
    ----------
    text
        The pair to render.
    raw
        ``True`` if ``text`` already is HTML (not escaped again).
    """
    en, lv = (text.en, text.lv) if raw else (esc(text.en), esc(text.lv))
    return f'<span lang="en" class="i-en">{en}</span><span lang="lv" class="i-lv">{lv}</span>'


def block(tag: str, text: Tr, *, raw: bool = False, cls: str | None = None) -> str:
    """Two block elements ``<tag lang>``, one per language (e.g. two paragraphs)."""
    en, lv = (text.en, text.lv) if raw else (esc(text.en), esc(text.lv))
    c = f" {cls}" if cls else ""
    return (f'<{tag} lang="en" class="i-en{c}">{en}</{tag}>\n'
            f'<{tag} lang="lv" class="i-lv{c}">{lv}</{tag}>')


# --------------------------------------------------------------------------- numbers


def _finite(x: float | int | None) -> bool:
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


def fmt_num(x: float | int | None, decimals: int, lang: str = "en", *,
            sign: bool = False) -> str:
    """``x`` rounded to ``decimals``, thousands grouped, language-specific decimal mark.

    Returns ``""`` for a missing or non-finite value (callers decide what to show then).
    ``sign=True`` prefixes ``+`` to positive values. Negative values use a real minus sign.
    """
    if not _finite(x):
        return ""
    v = round(float(x), decimals)  # type: ignore[arg-type]
    if v == 0:
        v = 0.0  # no "-0.0"
    text = f"{abs(v):,.{decimals}f}".replace(",", NNBSP)
    if lang == "lv":
        text = text.replace(".", ",")
    if v < 0:
        return MINUS + text
    return ("+" + text) if sign and v > 0 else text


def fmt_int(x: float | int | None, lang: str = "en") -> str:
    """A count with thousands grouped (``""`` if missing)."""
    return fmt_num(x, 0, lang)


def fmt_p(p: float | None, lang: str = "en") -> str:
    """A p-value: 3 decimals, ``<0.001`` below that; ``""`` if missing."""
    if not _finite(p):
        return ""
    if p < 0.001:  # type: ignore[operator]
        return "<" + fmt_num(0.001, 3, lang)
    return fmt_num(p, 3, lang)


_SHARE_UNITS = frozenset({"share", "share of days"})
#: unit -> decimals of levels and effects
_DECIMALS: dict[str, int] = {
    "EUR/month (real)": 0, "EUR (real)": 0, "EUR": 0, "EUR/day (real)": 2,
    "EUR per EUR": 2, "EUR per EUR per year": 2, "index": 3, "days": 1, "months": 2,
}


def is_share(unit: str | None) -> bool:
    """Whether ``unit`` is a share (shown as % and effects as percentage points)."""
    return unit in _SHARE_UNITS


def _decimals(unit: str | None) -> int:
    if is_share(unit):
        return 1
    return _DECIMALS.get(unit or "", 3)


def fmt_value(x: float | None, unit: str | None, lang: str = "en") -> str:
    """A level (participants' or twins' value) in its unit: shares as ``41.1 %``."""
    if not _finite(x):
        return ""
    if is_share(unit):
        return fmt_num(100 * x, 1, lang) + NNBSP + "%"  # type: ignore[operator]
    return fmt_num(x, _decimals(unit), lang)


def fmt_effect(x: float | None, unit: str | None, lang: str = "en", *,
               sign: bool = True) -> str:
    """A net effect or CI bound: shares in percentage points, signed."""
    if not _finite(x):
        return ""
    if is_share(unit):
        return fmt_num(100 * x, 1, lang, sign=sign)  # type: ignore[operator]
    return fmt_num(x, _decimals(unit), lang, sign=sign)


#: unit -> how a level and an effect are labelled (English, Latvian)
_UNIT_TEXT: dict[str, tuple[Tr, Tr]] = {
    "share": (Tr("%", "%"), Tr("percentage points", "procentpunkti")),
    "share of days": (Tr("% of days", "% no dienām"), Tr("percentage points",
                                                        "procentpunkti")),
    "EUR/month (real)": (Tr("EUR per month, real", "EUR mēnesī, reāli"),) * 2,
    "EUR/day (real)": (Tr("EUR per day, real", "EUR dienā, reāli"),) * 2,
    "EUR (real)": (Tr("EUR, real", "EUR, reāli"),) * 2,
    "EUR": (Tr("EUR", "EUR"),) * 2,
    "EUR per EUR": (Tr("EUR per EUR", "EUR uz 1 EUR"),) * 2,
    "EUR per EUR per year": (Tr("EUR per EUR per year", "EUR uz 1 EUR gadā"),) * 2,
    "index": (Tr("index", "indekss"),) * 2,
    "days": (Tr("days", "dienas"),) * 2,
    "months": (Tr("months", "mēneši"),) * 2,
}


def unit_text(unit: str | None, *, effect: bool = False) -> Tr:
    """Readable name of a unit (of a level, or with ``effect=True`` of a net effect)."""
    pair = _UNIT_TEXT.get(unit or "")
    if pair is None:
        return Tr(unit or "", unit or "")
    return pair[1] if effect else pair[0]
