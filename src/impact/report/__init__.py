"""The evaluator report: one self-contained HTML page per publication.

:func:`render_report` turns a publication folder (``data.publish/<run_id>/``, written by
:func:`impact.publish.publish`) into one HTML page; :func:`write_report` writes it to a
file. ``impact report`` is the command-line entry point.

What the page shows
-------------------
Run id, data vintage, code version and config hash (``manifest.json``) and whether every
file still matches the manifest's checksums; headline results in plain sentences (EECR06
gross and net rate with its four criteria, earnings and employment effects 6/12/24 months
after leaving, return on public investment and fiscal return, the composite index); the
event study (by month from leaving and from the start, pointwise CI and uniform band,
pre-period shaded as placebo); income curves of participants and twins; twins' quality
(overlap losses, love plot of |SMD| with the threshold, pre-period trajectories); subgroup
forest plots with Holm-adjusted p-values; Kaplan-Meier curves of the time to the next career
step; every indicator for all participants with its definition; methodology and
assumptions; the data-quality and disclosure-control summaries.

Guarantees
----------
* **Only disclosure-safe numbers.** The page is made from the publication folder alone.
  A row flagged ``suppressed`` is blanked when it is read (whatever values the file might
  hold) and appears as "–" with a footnote giving the reason; it is never plotted.
* **Air-gapped.** CSS and the small language-switch script are inline; figures are SVG
  (text drawn as paths, no fonts needed) embedded as ``data:`` URIs; the page references no
  network resource at all, and its Content-Security-Policy forbids loading any.
* **Deterministic.** The same publication (and library versions) give a byte-identical page:
  no timestamps, fixed SVG id salt, no SVG date or metadata, sorted inputs.
* **Accessible.** One ``<h1>``, ordered headings, a table of contents, ``alt`` text on every
  figure describing what it shows (with key numbers), real tables with ``<caption>`` and
  ``<th scope>``, ``lang`` attributes on every text.

Languages
---------
One file holds English and Latvian. Every text is written twice, as siblings tagged
``lang="en" class="i-en"`` and ``lang="lv" class="i-lv"``; a button pair at the top switches
(and updates ``<html lang>``, the title and the figures' ``alt`` texts). The page opens in
English; without JavaScript both languages are shown, English first. Numbers in prose use
the reader's decimal mark; tables use the decimal point. Latvian definitions that the
publication does not have are shown in English, marked as such.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from impact.report.data import Publication, ReportError, load_publication

__all__ = ["Publication", "ReportError", "load_publication", "render_report",
           "write_report"]


def render_report(publication: Path) -> str:
    """The evaluator report of a publication folder, as HTML text.

    Parameters
    ----------
    publication
        A publication folder, e.g. ``data/demo/publish/latest`` or
        ``data/demo/publish/<run_id>``.

    Returns
    -------
    str
        A complete, self-contained HTML document (UTF-8 text).

    Raises
    ------
    ReportError
        ``publication`` is not a readable publication folder.
    """
    from impact.report.render import render

    return render(Path(publication))


def write_report(publication: Path, out: Path) -> Path:
    """Render the report of ``publication`` and write it to ``out`` atomically.

    Parent folders are created; an existing file is replaced (temporary file beside it,
    then ``os.replace``).

    Parameters
    ----------
    publication
        The publication folder.
    out
        The HTML file to write.

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    text = render_report(publication)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
