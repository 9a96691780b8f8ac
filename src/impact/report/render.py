"""Assemble the evaluator report: one self-contained, bilingual HTML page.

See :mod:`impact.report` for what the page contains and the guarantees it gives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from impact.report import figures as fg
from impact.report.data import Publication, load_publication
from impact.report.i18n import (
    NA,
    SUPPRESSED,
    Tr,
    block,
    esc,
    fmt_effect,
    fmt_int,
    fmt_num,
    fmt_p,
    fmt_value,
    is_share,
    span,
    unit_text,
)

__all__ = ["render", "render_publication"]

Row = dict[str, Any]

# --------------------------------------------------------------------------- fixed texts

TITLE = Tr("Individual Learning Accounts: impact evaluation report",
           "Individuālo mācību kontu ietekmes izvērtējuma ziņojums")

#: families of indicators in the order of the full table, with their headings
FAMILIES: dict[str, Tr] = {
    "eecr06": Tr("Better labour-market situation (EECR06)",
                 "Labāka situācija darba tirgū (EECR06)"),
    "income": Tr("Earnings", "Ienākumi"),
    "labour": Tr("Employment, unemployment and sickness",
                 "Nodarbinātība, bezdarbs un slimība"),
    "quality": Tr("Job quality and career", "Darba kvalitāte un karjera"),
    "mobility": Tr("Occupational and sectoral mobility", "Profesionālā un nozaru mobilitāte"),
    "skills_match": Tr("Skills match", "Prasmju atbilstība"),
    "roi": Tr("Return on investment and public finances",
              "Ieguldījumu atdeve un publiskās finanses"),
    "composite": Tr("Composite index", "Saliktais indekss"),
    "resilience": Tr("Resilience", "Noturība"),
}
CONTRAST = {"did": Tr("DiD", "DiD"), "level": Tr("level", "līmenis"),
            "gross": Tr("gross", "bruto")}
#: indicators placed first within their family (others follow by name and horizon)
PRIORITY = ("eecr06_any", *("eecr06_occupation_up", "eecr06_pay_up",
                            "eecr06_fixed_to_permanent", "eecr06_part_to_full_time"),
            "earnings_real_h6", "earnings_real_h12", "earnings_real_h24", "employed_h6",
            "employed_h12", "employed_h24", "roi_public_h12", "roi_public_h24",
            "roi_public_annual", "roi_total_h12", "roi_total_h24", "fiscal_return_h12",
            "fiscal_return_h24")
#: the four EECR06 criteria, in the order of the definition (a)-(d)
EECR06_CRITERIA = ("eecr06_occupation_up", "eecr06_pay_up", "eecr06_fixed_to_permanent",
                   "eecr06_part_to_full_time")
EECR06_RELATIVE = ("eecr06_pay_up_vs_sector", "eecr06_pay_up_vs_twins")
#: indicators with a subgroup (forest) plot
FOREST = ("eecr06_any", "earnings_real_h12", "employed_h12")
#: dimensions in publication order (others follow alphabetically)
DIMENSION_ORDER = ("all", "sex", "age_band", "education", "region", "urbanisation",
                   "occupation_group", "sector_at_entry", "public_private", "programme_type",
                   "field", "hours_band", "cohort_quarter", "status_at_entry")
#: event-study series shown: (indicator, clock, outcome text, unit)
EVENT_STUDY = (
    ("event_study_earnings_real_end", "end",
     Tr("real monthly earnings", "reālajiem mēneša ienākumiem"), "EUR/month (real)"),
    ("event_study_earnings_real_start", "start",
     Tr("real monthly earnings", "reālajiem mēneša ienākumiem"), "EUR/month (real)"),
    ("event_study_employed_end", "end", Tr("employment", "nodarbinātību"), "share"),
    ("event_study_daily_wage_real_end", "end",
     Tr("the real daily wage", "reālo dienas algu"), "EUR/day (real)"),
)
CLOCK = {"end": Tr("month from leaving training", "mēneša kopš dalības beigām"),
         "start": Tr("month from the start of training", "mēneša kopš mācību sākuma")}
AXIS = {"EUR/month (real)": "Effect, EUR per month (real)\nIetekme, EUR mēnesī (reāli)",
        "EUR/day (real)": "Effect, EUR per day (real)\nIetekme, EUR dienā (reāli)",
        "share": "Effect, percentage points\nIetekme, procentpunkti"}
EXACT = {"sex": Tr("sex", "dzimums"), "age_band": Tr("age band", "vecuma grupa"),
         "region_code": Tr("region", "reģions"),
         "edu_band": Tr("education level", "izglītības līmenis"),
         "employed_l1": Tr("employed in the month before", "nodarbinātība iepriekšējā mēnesī"),
         "registered_l1": Tr("registered unemployed in the month before",
                             "reģistrēts bezdarbnieks iepriekšējā mēnesī"),
         "job_recency": Tr("months since the last job", "mēneši kopš pēdējā darba"),
         "ila_account_l1": Tr("ILA account in the month before",
                              "IMK konts iepriekšējā mēnesī")}
PRE_SERIES = (("earnings_real", "Earnings, EUR (real)\nIenākumi, EUR (reāli)", 1.0),
              ("employed", "Employed, %\nNodarbināti, %", 100.0),
              ("days_worked", "Days worked\nNostrādātās dienas", 1.0))
REGISTERS = Tr("register", "reģistrs")


def _reason(reason: str | None, k: int | None) -> Tr:
    """Plain-language reason of a suppression."""
    kk = "the minimum" if k is None else str(k)
    kl = "minimālā" if k is None else str(k)
    texts = {
        "primary:threshold": Tr(f"fewer than {kk} participants or twins in the cell",
                                f"šūnā ir mazāk nekā {kl} dalībnieku vai dvīņu"),
        "primary:dominance": Tr("a few persons would account for most of the total "
                                "(dominance rule)",
                                "dažas personas veidotu lielāko daļu no kopsummas "
                                "(dominances noteikums)"),
        "primary:p_percent": Tr("one person's value could be estimated too closely "
                                "(p% rule)",
                                "vienas personas vērtību varētu novērtēt pārāk precīzi "
                                "(p% noteikums)"),
        "secondary:margin": Tr("hidden so that another hidden cell cannot be worked out "
                               "from the total of its breakdown (secondary suppression)",
                               "paslēpta, lai citu paslēptu šūnu nevarētu aprēķināt no "
                               "griezuma kopsummas (sekundārā konfidencialitāte)"),
        "secondary:population": Tr("hidden so that another hidden cell cannot be worked "
                                   "out from other breakdowns of the same persons "
                                   "(secondary suppression)",
                                   "paslēpta, lai citu paslēptu šūnu nevarētu aprēķināt no "
                                   "citiem to pašu personu griezumiem (sekundārā "
                                   "konfidencialitāte)"),
        "secondary:audit": Tr("hidden because the intruder audit could otherwise narrow "
                              "down another hidden cell (secondary suppression)",
                              "paslēpta, jo citādi uzbrucēja audits varētu tuvināti "
                              "atjaunot citu paslēptu šūnu (sekundārā konfidencialitāte)"),
    }
    return texts.get(reason or "", Tr(f"suppressed by disclosure control ({reason})",
                                      f"paslēpta konfidencialitātes kontrolē ({reason})"))


# --------------------------------------------------------------------------- small helpers


def _ok(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and not math.isfinite(x))


def _scaled(x: Any, scale: float) -> float | None:
    return float(x) * scale if _ok(x) else None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _both(f: Callable[[str], str]) -> Tr:
    """A text built by ``f(lang)`` in both languages."""
    return Tr(f("en"), f("lv"))


def _ci(row: Row, unit: str | None, lang: str) -> str:
    lo, hi = fmt_effect(row.get("ci_low"), unit, lang), fmt_effect(row.get("ci_high"), unit,
                                                                  lang)
    if not lo or not hi:
        return ""
    return f"{lo} to {hi}" if lang == "en" else f"no {lo} līdz {hi}"


def _ci_cell(row: Row, unit: str | None) -> str:
    lo, hi = fmt_effect(row.get("ci_low"), unit), fmt_effect(row.get("ci_high"), unit)
    return f"{lo}\u2009…\u2009{hi}" if lo and hi else ""


def _zero_note(row: Row) -> Tr:
    lo, hi = row.get("ci_low"), row.get("ci_high")
    if not (_ok(lo) and _ok(hi)):
        return Tr("", "")
    if lo > 0 or hi < 0:
        return Tr("The interval does not include zero.", "Intervāls neietver nulli.")
    return Tr("The interval includes zero: the data are also consistent with no effect.",
              "Intervāls ietver nulli: dati ir saderīgi arī ar to, ka ietekmes nav.")


class _Marks:
    """Footnote letters of the suppression reasons met in one table."""

    def __init__(self, prefix: str, k: int | None) -> None:
        self.prefix = prefix
        self.k = k
        self.used: dict[str, str] = {}

    def cell(self, reason: str | None) -> str:
        """Content of a suppressed cell: the dash, a hidden word, the footnote link."""
        key = reason or "?"
        if key not in self.used:
            self.used[key] = "abcdefghijklmnopqrstuvwxyz"[len(self.used) % 26]
        letter = self.used[key]
        return (f'<span aria-hidden="true">{SUPPRESSED}</span><span class="sr">'
                f'{span(Tr("suppressed", "konfidenciāli"))}</span><sup><a href="#'
                f'{self.prefix}-{letter}" class="fn">{letter}</a></sup>')

    def notes(self) -> str:
        """The footnotes (empty if no cell of the table was suppressed)."""
        if not self.used:
            return ""
        items = []
        for reason, letter in self.used.items():
            why = _reason(None if reason == "?" else reason, self.k)
            items.append(f'<li id="{self.prefix}-{letter}"><sup>{letter}</sup> {SUPPRESSED} '
                         + span(Tr(f"suppressed: {why.en}.", f"konfidenciāli: {why.lv}."))
                         + "</li>")
        return '<ul class="notes">' + "".join(items) + "</ul>"


def _table(tid: str, caption: Tr, head: Sequence[Tr], body: str, *, notes: str = "",
           foot: str = "", cls: str = "") -> str:
    """An accessible table: caption, column headers with scope, scrollable on small screens.

    ``body`` is the inner HTML of one or more ``<tbody>`` (rows already built).
    """
    ths = "".join(f'<th scope="col">{span(h)}</th>' for h in head)
    return (f'<div class="scroll" role="region" tabindex="0" aria-labelledby="{tid}-cap">'
            f'<table id="{tid}" class="{cls}"><caption id="{tid}-cap">{span(caption)}</caption>'
            f"<thead><tr>{ths}</tr></thead>{body}{foot}</table></div>{notes}")


def _td(text: str, *, num: bool = True, raw: bool = False) -> str:
    return f'<td class="{"num" if num else "txt"}">{text if raw else esc(text)}</td>'


def _figure(img: fg.Image, fid: str, alt: Tr, caption: Tr) -> str:
    return (f'<figure id="{fid}"><img src="{img.uri}" width="{img.width}" '
            f'height="{img.height}" alt="{esc(alt.en)}" data-alt-en="{esc(alt.en)}" '
            f'data-alt-lv="{esc(alt.lv)}" decoding="sync">'
            f"<figcaption>{span(caption)}</figcaption></figure>")


def _section(sid: str, title: Tr, body: str) -> str:
    return (f'<section id="{sid}" aria-labelledby="{sid}-h"><h2 id="{sid}-h">{span(title)}</h2>'
            f"\n{body}\n</section>")


def _h3(title: Tr, hid: str) -> str:
    return f'<h3 id="{hid}">{span(title)}</h3>'


def _notice(text: Tr, *, kind: str = "info") -> str:
    return f'<div class="notice {kind}" role="note">{span(text)}</div>'


# --------------------------------------------------------------------------- the report


class _Report:
    """Builds the page from one :class:`Publication`."""

    def __init__(self, pub: Publication) -> None:
        self.pub = pub
        self.k = pub.min_persons
        ind = pub.indicators
        self.rows: dict[tuple[str, str, str], Row] = {
            (r["indicator"], r["dimension"], r["group"]): r for r in ind.iter_rows(named=True)}
        self.config: Mapping[str, Any] = pub.manifest.get("config") or {}

    # ---------------------------------------------------------------- lookup

    def row(self, indicator: str, dimension: str = "all", group: str = "all") -> Row | None:
        return self.rows.get((indicator, dimension, group))

    def label(self, indicator: str, row: Row | None = None) -> Tr:
        d = self.pub.definitions.get(indicator) or {}
        en = (row or {}).get("indicator_label_en") or d.get("label_en") or indicator
        lv = (row or {}).get("indicator_label_lv") or d.get("label_lv") or en
        return Tr(str(en), str(lv))

    def unit(self, indicator: str, row: Row | None = None) -> str | None:
        return (row or {}).get("unit") or (self.pub.definitions.get(indicator) or {}).get("unit")

    # ---------------------------------------------------------------- header

    def header(self) -> str:
        m = self.pub.manifest
        items = [
            (Tr("Run id", "Palaišanas identifikators"), f"<code>{esc(m.get('run_id', ''))}</code>"),
            (Tr("Register data up to", "Reģistru dati līdz"), esc(m.get("data_vintage", ""))),
            (Tr("Code version", "Koda versija"), f"<code>{esc(m.get('code_version', ''))}</code>"),
            (Tr("Configuration hash (SHA-256)", "Konfigurācijas jaucējvērtība (SHA-256)"),
             f"<code class=\"hash\">{esc(m.get('config_hash', ''))}</code>"),
            (Tr("Publication format", "Publikācijas formāts"),
             esc(m.get("format_version", ""))),
        ]
        problems = self.pub.problems
        n_files = len(m.get("files") or [])
        if problems:
            integrity = span(Tr(
                f"WARNING: {len(problems)} problem(s) against manifest.json: "
                + "; ".join(problems[:5]),
                f"BRĪDINĀJUMS: {len(problems)} neatbilstība(-as) manifest.json: "
                + "; ".join(problems[:5])))
        else:
            integrity = span(Tr(f"all {n_files} files match the SHA-256 checksums of "
                                "manifest.json",
                                f"visi {n_files} faili atbilst manifest.json SHA-256 "
                                "kontrolsummām"))
        items.append((Tr("Integrity", "Integritāte"), integrity))
        dl = "".join(f"<dt>{span(k)}</dt><dd>{v}</dd>" for k, v in items)
        out = [
            '<div class="langswitch" role="group" aria-label="Language / Valoda">'
            '<button type="button" data-set-lang="en" aria-pressed="true" lang="en">English'
            '</button><button type="button" data-set-lang="lv" aria-pressed="false" lang="lv">'
            "Latviešu</button></div>",
            f"<h1>{span(TITLE)}</h1>",
            f'<dl class="meta">{dl}</dl>',
        ]
        if problems:
            out.append(_notice(Tr("The publication folder does not match its manifest: "
                                  "the numbers below may have been altered after "
                                  "publication.",
                                  "Publikācijas mape neatbilst tās manifestam: zemāk "
                                  "redzamie skaitļi, iespējams, mainīti pēc publicēšanas."),
                               kind="warn"))
        synth = self.config.get("synth")
        if synth:
            persons = fmt_int(synth.get("persons"))
            out.append(_notice(Tr(
                f"These results come from SYNTHETIC registers ({persons} simulated persons, "
                f"seed {synth.get('seed')}), not from real data. They demonstrate the method "
                "and must not be read as findings about the programme.",
                f"Šie rezultāti iegūti no SINTĒTISKIEM reģistriem ({persons} simulētas "
                f"personas, sēkla {synth.get('seed')}), nevis no reāliem datiem. Tie parāda "
                "metodi, un tos nedrīkst uzskatīt par secinājumiem par programmu."),
                kind="warn"))
        out.append(block("p", Tr(
            "This report shows only numbers from the publication folder named above. Every "
            "number in it has passed statistical disclosure control. Cells that disclosure "
            f"control hid are shown as {SUPPRESSED} with a note giving the reason; their "
            "values are not in the publication and cannot be shown.",
            "Šajā ziņojumā ir tikai skaitļi no iepriekš norādītās publikācijas mapes. Visiem "
            "skaitļiem ir veikta statistiskā konfidencialitātes kontrole. Šūnas, kuras "
            f"konfidencialitātes kontrole paslēpa, ir attēlotas kā {SUPPRESSED} ar piezīmi par "
            "iemeslu; to vērtību publikācijā nav, un tās nevar parādīt.")))
        return "\n".join(out)

    def nav(self, sections: Sequence[tuple[str, Tr]]) -> str:
        items = "".join(f'<li><a href="#{sid}">{span(t)}</a></li>' for sid, t in sections)
        return (f'<nav aria-labelledby="toc-h"><h2 id="toc-h">{span(Tr("Contents", "Saturs"))}'
                f"</h2><ol>{items}</ol></nav>")

    # ---------------------------------------------------------------- headline

    def _missing(self, indicator: str) -> Tr:
        r = self.row(indicator)
        label = self.label(indicator, r)
        if r is None:
            return Tr(f"{label.en}: not in this publication.",
                      f"{label.lv}: šajā publikācijā nav.")
        why = _reason(r.get("suppression_reason"), self.k)
        return Tr(f"{label.en}: {SUPPRESSED} suppressed by disclosure control ({why.en}).",
                  f"{label.lv}: {SUPPRESSED} konfidenciāli ({why.lv}).")

    def _shown(self, indicator: str) -> Row | None:
        r = self.row(indicator)
        return r if r is not None and not r["suppressed"] else None

    def _key_table(self, tid: str, caption: Tr, indicators: Iterable[str], *,
                   cost: bool = False) -> str:
        """Participants, twins, net, CI, p (and persons) of the overall cells."""
        marks = _Marks(tid, self.k)
        rows = []
        for ind in indicators:
            r = self.row(ind)
            if r is None:
                continue
            unit = self.unit(ind, r)
            cells = [f'<th scope="row">{span(self.label(ind, r))}</th>']
            if r["suppressed"]:
                cells += [f'<td class="num supp">{marks.cell(r.get("suppression_reason"))}</td>'
                          ] * (6 if not cost else 5)
            else:
                if cost:
                    cells.append(_td(fmt_num(r.get("participants"), 0) or NA.en))
                else:
                    cells.append(_td(fmt_value(r.get("participants"), unit) or NA.en))
                    cells.append(_td(fmt_value(r.get("twins"), unit) or NA.en))
                cells += [_td(fmt_effect(r.get("net"), unit) or NA.en),
                          _td(_ci_cell(r, unit) or NA.en), _td(fmt_p(r.get("p_value")) or NA.en),
                          _td(f"{fmt_int(r.get('n_participants'))} / "
                              f"{fmt_int(r.get('n_twins'))}")]
            cells.append(_td(span(unit_text(unit, effect=True)), num=False, raw=True))
            rows.append("<tr>" + "".join(cells) + "</tr>")
        if not rows:
            return ""
        head = [Tr("Indicator", "Rādītājs")]
        head += ([Tr("Mean public cost per participant, EUR",
                     "Vidējās publiskās izmaksas uz dalībnieku, EUR")] if cost else
                 [Tr("Participants", "Dalībnieki"), Tr("Statistical twins", "Statistiskie dvīņi")])
        head += [Tr("Net effect", "Neto ietekme"), Tr("95 % CI", "95 % TI"),
                 Tr("p-value", "p-vērtība"),
                 Tr("Persons: participants / twins", "Personas: dalībnieki / dvīņi"),
                 Tr("Unit of the net effect", "Neto ietekmes mērvienība")]
        return _table(tid, caption, head, "<tbody>" + "".join(rows) + "</tbody>",
                      notes=marks.notes(), cls="key")

    def headline(self) -> str:
        out: list[str] = []
        # EECR06
        out.append(_h3(Tr("Better labour-market situation six months after leaving (EECR06)",
                          "Labāka situācija darba tirgū sešus mēnešus pēc dalības beigām "
                          "(EECR06)"), "headline-eecr06"))
        r = self._shown("eecr06_any")
        if r is None:
            out.append(block("p", self._missing("eecr06_any")))
        else:
            h = r.get("horizon") or 6
            unit = r.get("unit")

            def eecr(lang: str) -> str:
                p, t = fmt_value(r["participants"], unit, lang), fmt_value(r["twins"], unit,
                                                                           lang)
                n = fmt_effect(r["net"], unit, lang)
                ci = _ci(r, unit, lang)
                np_, nt = fmt_int(r["n_participants"], lang), fmt_int(r["n_twins"], lang)
                if lang == "en":
                    return (f"{h} months after leaving, {p} of participants employed at entry "
                            f"were in a better labour-market situation than at entry (gross "
                            f"rate); among their statistical twins {t}. The difference, the "
                            f"net effect of training, is {n} percentage points (95 % "
                            f"confidence interval {ci}; {np_} participants, {nt} twins). "
                            + _zero_note(r).en)
                return (f"{h} mēnešus pēc dalības beigām {p} dalībnieku, kuri dalības sākumā "
                        f"bija nodarbināti, bija labākā situācijā darba tirgū nekā sākumā "
                        f"(bruto rādītājs); viņu statistisko dvīņu vidū – {t}. Starpība jeb "
                        f"mācību neto ietekme ir {n} procentpunkti (95 % ticamības intervāls "
                        f"{ci}; {np_} dalībnieki, {nt} dvīņi). " + _zero_note(r).lv)

            out.append(block("p", _both(eecr), cls="lead"))
        out.append(block("p", Tr(
            "A participant counts as being in a better situation if at least one of four "
            "criteria holds in month 6 after leaving compared with the month training began: "
            "(a) a higher occupation, (b) a pay rise above the threshold, (c) a move from a "
            "fixed-term to a permanent contract, (d) a move from part-time to full-time work. "
            "Each criterion requires employment in month 6.",
            "Dalībnieks ir labākā situācijā, ja 6. mēnesī pēc dalības beigām, salīdzinot ar "
            "mācību sākuma mēnesi, izpildās vismaz viens no četriem kritērijiem: (a) augstāka "
            "profesija, (b) atalgojuma pieaugums virs sliekšņa, (c) pāreja no terminēta uz "
            "beztermiņa darba līgumu, (d) pāreja no nepilnas uz pilnu slodzi. Katram "
            "kritērijam 6. mēnesī jābūt nodarbinātam.")))
        out.append(self._key_table(
            "t-eecr06", Tr("EECR06 and its criteria, all participants employed at entry",
                           "EECR06 un tā kritēriji, visi dalības sākumā nodarbinātie dalībnieki"),
            ("eecr06_any", *EECR06_CRITERIA, *EECR06_RELATIVE)))
        # earnings and employment
        out.append(_h3(Tr("Earnings and employment", "Ienākumi un nodarbinātība"),
                       "headline-earnings"))
        def earn(lang: str, r: Row, h: int, unit: str | None) -> str:
            p, t = fmt_value(r["participants"], unit, lang), fmt_value(r["twins"], unit, lang)
            n, ci = fmt_effect(r["net"], unit, lang), _ci(r, unit, lang)
            if lang == "en":
                return (f"{h} months after leaving, participants earned on average EUR {p} "
                        f"a month (real prices), their twins EUR {t}. Taking account of "
                        f"the difference before training (difference in differences), the "
                        f"net effect on monthly earnings is EUR {n} (95 % CI {ci}).")
            return (f"{h} mēnešus pēc dalības beigām dalībnieki vidēji nopelnīja {p} EUR "
                    f"mēnesī (reālās cenās), viņu dvīņi – {t} EUR. Ņemot vērā starpību "
                    f"pirms mācībām (starpību starpība), neto ietekme uz mēneša "
                    f"ienākumiem ir {n} EUR (95 % TI {ci}).")

        def emp(lang: str, r: Row, h: int, unit: str | None) -> str:
            p, t = fmt_value(r["participants"], unit, lang), fmt_value(r["twins"], unit, lang)
            n, ci = fmt_effect(r["net"], unit, lang), _ci(r, unit, lang)
            if lang == "en":
                return (f"{h} months after leaving, {p} of participants and {t} of their "
                        f"twins were employed; net effect on the employment rate "
                        f"(difference in differences): {n} percentage points (95 % CI "
                        f"{ci}).")
            return (f"{h} mēnešus pēc dalības beigām bija nodarbināti {p} dalībnieku un "
                    f"{t} viņu dvīņu; neto ietekme uz nodarbinātības līmeni (starpību "
                    f"starpība): {n} procentpunkti (95 % TI {ci}).")

        items = []
        for stem, sentence in (("earnings_real", earn), ("employed", emp)):
            for h in (6, 12, 24):
                r = self._shown(f"{stem}_h{h}")
                if r is None:
                    items.append(block("li", self._missing(f"{stem}_h{h}")))
                    continue
                items.append(block("li", _both(
                    lambda lang, r=r, h=h, f=sentence: f(lang, r, h, r.get("unit")))))
        out.append('<ul class="findings">' + "\n".join(items) + "</ul>")
        out.append(self._key_table(
            "t-earnings", Tr("Earnings and employment after leaving, all participants",
                             "Ienākumi un nodarbinātība pēc dalības beigām, visi dalībnieki"),
            ("earnings_real_h6", "earnings_real_h12", "earnings_real_h24", "employed_h6",
             "employed_h12", "employed_h24", "registered_unemployed_h12")))
        out.append(block("p", Tr(
            "For difference-in-differences indicators the participants' and twins' columns are "
            "the levels after leaving; the net effect compares the changes since before "
            "training, so it is not simply their difference.",
            "Starpību starpības rādītājiem dalībnieku un dvīņu kolonnās ir līmenis pēc dalības "
            "beigām; neto ietekme salīdzina izmaiņas kopš laika pirms mācībām, tāpēc tā nav "
            "vienkārši šo skaitļu starpība."), cls="small"))
        # ROI
        out.append(_h3(Tr("Return on public investment", "Publisko ieguldījumu atdeve"),
                       "headline-roi"))
        roi = [(i, self._shown(i)) for i in ("roi_public_h12", "roi_public_h24",
                                             "roi_public_annual", "fiscal_return_h12",
                                             "fiscal_return_h24")]
        shown = {i: r for i, r in roi if r is not None}
        if shown:
            def roi_text(lang: str) -> str:
                parts = []
                base = shown.get("roi_public_h12") or next(iter(shown.values()))
                cost = fmt_num(base.get("participants"), 0, lang)
                if lang == "en":
                    parts.append(f"The mean public training cost was EUR {cost} per "
                                 "participant.")
                else:
                    parts.append(f"Vidējās publiskās mācību izmaksas bija {cost} EUR uz "
                                 "dalībnieku.")
                for ind, en, lv in (
                        ("roi_public_h12", "Each euro of public cost was followed by EUR {n} "
                         "of extra real earnings within 12 months (95 % CI {ci})",
                         "Katram publisko izmaksu eiro sekoja {n} EUR papildu reālo ienākumu "
                         "12 mēnešu laikā (95 % TI {ci})"),
                        ("roi_public_h24", "and EUR {n} within 24 months ({ci})",
                         "un {n} EUR 24 mēnešu laikā ({ci})"),
                        ("roi_public_annual", "EUR {n} per year (annualised over 24 months; "
                         "{ci})", "{n} EUR gadā (24 mēnešu vidēji; {ci})"),
                        ("fiscal_return_h12", "Fiscal return (extra income tax and social "
                         "contributions less unemployment benefits) per euro of public cost: "
                         "EUR {n} within 12 months ({ci})",
                         "Fiskālā atdeve (papildu iedzīvotāju ienākuma nodoklis un sociālās "
                         "iemaksas, atskaitot bezdarbnieka pabalstus) uz vienu publisko "
                         "izmaksu eiro: {n} EUR 12 mēnešu laikā ({ci})"),
                        ("fiscal_return_h24", "EUR {n} within 24 months ({ci})",
                         "{n} EUR 24 mēnešu laikā ({ci})")):
                    r = shown.get(ind)
                    if r is None:
                        continue
                    n = fmt_effect(r.get("net"), r.get("unit"), lang, sign=False)
                    parts.append((en if lang == "en" else lv).format(n=n, ci=_ci(r, r.get(
                        "unit"), lang)))
                text = parts[0] + " " + "; ".join(parts[1:4]) + "."
                if len(parts) > 4:
                    text += " " + "; ".join(parts[4:]) + "."
                return text

            out.append(block("p", _both(roi_text)))
        for i, r in roi:
            if r is None:
                out.append(block("p", self._missing(i), cls="small"))
        out.append(self._key_table(
            "t-roi", Tr("Return on investment and fiscal return per euro of cost",
                        "Ieguldījumu atdeve un fiskālā atdeve uz vienu izmaksu eiro"),
            ("roi_public_h12", "roi_public_h24", "roi_public_annual", "roi_total_h12",
             "roi_total_h24", "fiscal_return_h12", "fiscal_return_h24"), cost=True))
        # composite
        out.append(_h3(Tr("Composite impact index", "Saliktais ietekmes indekss"),
                       "headline-composite"))
        r = self._shown("composite_index_h12")
        if r is None:
            out.append(block("p", self._missing("composite_index_h12")))
        else:
            w = (self.config.get("indicators") or {}).get("composite_weights") or {}
            lv_names = {"earnings": "ienākumi", "employment": "nodarbinātība",
                        "mobility": "mobilitāte"}
            ws = ", ".join(f"{k} {fmt_num(v, 2)}" for k, v in sorted(w.items()))
            wl = ", ".join(f"{lv_names.get(k, k)} {fmt_num(v, 2, 'lv')}"
                           for k, v in sorted(w.items()))

            def comp(lang: str) -> str:
                unit = r.get("unit")
                n, ci = fmt_effect(r["net"], unit, lang), _ci(r, unit, lang)
                p, t = fmt_value(r["participants"], unit, lang), fmt_value(r["twins"], unit,
                                                                           lang)
                if lang == "en":
                    return (f"The composite index 12 months after leaving combines earnings, "
                            f"employment and mobility (weights: {ws}). Participants {p}, "
                            f"twins {t}; net effect {n} (95 % CI {ci}). "
                            + _zero_note(r).en)
                return (f"Saliktais indekss 12 mēnešus pēc dalības beigām apvieno ienākumus, "
                        f"nodarbinātību un mobilitāti (svari: {wl}). Dalībnieki {p}, dvīņi "
                        f"{t}; neto ietekme {n} (95 % TI {ci}). " + _zero_note(r).lv)

            out.append(block("p", _both(comp)))
        return "\n".join(out)

    # ---------------------------------------------------------------- event study

    def event_study(self) -> str:
        es = self.pub.table("event_study")
        if es is None or es.height == 0:
            return block("p", Tr("The publication has no event-study table.",
                                 "Publikācijā nav notikumu analīzes tabulas."))
        out = [block("p", Tr(
            "Each point is the net effect in one month: participants compared with their twins, "
            "both measured against their own average in the 12 months before training began. "
            "The darker band is the 95 % confidence interval of each month on its own; the "
            "lighter band is a 95 % uniform band that covers the whole curve at once, so a "
            "curve lying inside it everywhere is consistent with no effect at any month. "
            "Months before the start are placebo tests: training cannot have had an effect "
            "yet, so estimates there should be close to zero.",
            "Katrs punkts ir neto ietekme vienā mēnesī: dalībnieki salīdzinājumā ar saviem "
            "dvīņiem, abi mērīti pret savu vidējo līmeni 12 mēnešos pirms mācību sākuma. "
            "Tumšākā josla ir katra mēneša 95 % ticamības intervāls atsevišķi; gaišākā josla "
            "ir 95 % vienlaidu josla, kas aptver visu līkni uzreiz. Mēneši pirms mācību "
            "sākuma ir placebo pārbaudes: mācībām tur vēl nevar būt ietekmes, tāpēc "
            "novērtējumiem jābūt tuvu nullei."))]
        for n, (ind, clock, outcome, unit) in enumerate(EVENT_STUDY, start=1):
            d = es.filter(pl.col("indicator") == ind).sort("horizon")
            if d.height == 0:
                continue
            scale = 100.0 if is_share(unit) else 1.0
            img = fg.event_study_figure(d, clock=clock, ylabel=AXIS[unit], scale=scale)
            n_supp = int(d["suppressed"].sum()) if "suppressed" in d.columns else 0
            alt = self._es_alt(d, clock, outcome, unit)
            cap = Tr(f"Figure {n}. Effect on {outcome.en} by {CLOCK[clock].en}, with 95 % "
                     "pointwise confidence interval and uniform band"
                     + (f"; {n_supp} month(s) suppressed by disclosure control are left out"
                        if n_supp else "") + ".",
                     f"{n}. attēls. Ietekme uz {outcome.lv} pa mēnešiem ({CLOCK[clock].lv}), "
                     "ar 95 % punktveida ticamības intervālu un vienlaidu joslu"
                     + (f"; {n_supp} konfidenciāli mēneši nav attēloti" if n_supp else "")
                     + ".")
            out.append(_figure(img, f"fig-{_slug(ind)}", alt, cap))
        out.append(self._es_table(es))
        return "\n".join(out)

    def _es_alt(self, d: pl.DataFrame, clock: str, outcome: Tr, unit: str) -> Tr:
        shown = d.filter(~pl.col("suppressed") & pl.col("net").is_not_null())
        if shown.height == 0:
            return Tr(f"Chart of the effect on {outcome.en}: every month is suppressed.",
                      f"Ietekmes uz {outcome.lv} diagramma: visi mēneši ir konfidenciāli.")
        lo, hi = int(d["horizon"].min()), int(d["horizon"].max())
        pre = shown.filter(pl.col("horizon") < 0)
        parts_en = [f"Line chart of the estimated effect on {outcome.en} for each "
                    f"{CLOCK[clock].en}, from {lo} to {hi}, with shaded confidence bands."]
        parts_lv = [f"Līniju diagramma: novērtētā ietekme uz {outcome.lv} katram "
                    f"{CLOCK[clock].lv}, no {lo} līdz {hi}, ar iekrāsotām ticamības joslām."]
        if pre.height:
            a, b = fmt_effect(pre["net"].min(), unit), fmt_effect(pre["net"].max(), unit)
            al, bl = (fmt_effect(pre["net"].min(), unit, "lv"),
                      fmt_effect(pre["net"].max(), unit, "lv"))
            what = "before the start (placebo)" if clock == "start" else "before leaving"
            wlv = "pirms sākuma (placebo)" if clock == "start" else "pirms dalības beigām"
            parts_en.append(f"Estimates {what} range from {a} to {b}.")
            parts_lv.append(f"Novērtējumi {wlv} ir no {al} līdz {bl}.")
        for m in (6, 12, 24):
            r = shown.filter(pl.col("horizon") == m)
            if r.height:
                rr = r.row(0, named=True)
                parts_en.append(f"Month {m}: {fmt_effect(rr['net'], unit)} "
                                f"({_ci(rr, unit, 'en')}).")
                parts_lv.append(f"{m}. mēnesis: {fmt_effect(rr['net'], unit, 'lv')} "
                                f"({_ci(rr, unit, 'lv')}).")
        u = unit_text(unit, effect=True)
        parts_en.append(f"Unit: {u.en}.")
        parts_lv.append(f"Mērvienība: {u.lv}.")
        return Tr(" ".join(parts_en), " ".join(parts_lv))

    def _es_table(self, es: pl.DataFrame) -> str:
        months = (-24, -12, -6, -1, 0, 3, 6, 12, 18, 24, 30, 36)
        marks = _Marks("t-es", self.k)
        series = []
        for ind, clock, outcome, unit in EVENT_STUDY:
            d = {r["horizon"]: r for r in es.filter(pl.col("indicator") == ind).iter_rows(
                named=True)}
            if d:
                series.append((d, clock, outcome, unit))
        body = []
        for m in months:
            cells = [f'<th scope="row">{m:+d}</th>'.replace("+0<", "0<")]
            for d, _, _, unit in series:
                r = d.get(m)
                if r is None:
                    cells.append(_td(""))
                elif r["suppressed"]:
                    cells.append(f'<td class="num supp">{marks.cell(r["suppression_reason"])}'
                                 "</td>")
                else:
                    cells.append(_td(f"{fmt_effect(r['net'], unit)} <span class=\"ci\">"
                                     f"({esc(_ci_cell(r, unit))})</span>", raw=True))
            body.append("<tr>" + "".join(cells) + "</tr>")
        head = [Tr("Month", "Mēnesis")]
        for _, clock, outcome, unit in series:
            u = unit_text(unit, effect=True)
            head.append(Tr(f"{outcome.en.capitalize()}, by {CLOCK[clock].en} ({u.en})",
                           f"{outcome.lv.capitalize()}, pa mēnešiem ({CLOCK[clock].lv}; {u.lv})"))
        return _table("t-es", Tr("Event study: net effect (95 % CI) at selected months",
                                 "Notikumu analīze: neto ietekme (95 % TI) izvēlētos mēnešos"),
                      head, "<tbody>" + "".join(body) + "</tbody>", notes=marks.notes())

    # ---------------------------------------------------------------- income curves

    def income_curves(self) -> str:
        c = self.pub.table("income_curves")
        if c is None or c.height == 0:
            return block("p", Tr("The publication has no income curves.",
                                 "Publikācijā nav ienākumu līkņu."))
        img = fg.income_curves_figure(c)
        shown = c.filter(~pl.col("suppressed")).sort("horizon")
        alt_en = ["Two-panel line chart. Top: mean real monthly earnings of participants and of "
                  "their statistical twins for each month from "
                  f"{int(c['horizon'].min())} to {int(c['horizon'].max())} around leaving "
                  "training, with 95 % confidence bands. Bottom: their difference."]
        alt_lv = ["Divu daļu līniju diagramma. Augšā: dalībnieku un viņu statistisko dvīņu "
                  "vidējie reālie mēneša ienākumi katrā mēnesī no "
                  f"{int(c['horizon'].min())} līdz {int(c['horizon'].max())} ap dalības "
                  "beigām, ar 95 % ticamības joslām. Apakšā: to starpība."]
        for m in (-12, 0, 12, 24):
            r = shown.filter(pl.col("horizon") == m)
            if r.height:
                rr = r.row(0, named=True)
                u = "EUR/month (real)"
                alt_en.append(f"Month {m}: participants EUR {fmt_value(rr['participants'], u)}, "
                              f"twins EUR {fmt_value(rr['twins'], u)}.")
                alt_lv.append(f"{m}. mēnesis: dalībnieki {fmt_value(rr['participants'], u, 'lv')}"
                              f" EUR, dvīņi {fmt_value(rr['twins'], u, 'lv')} EUR.")
        n_supp = int(c["suppressed"].sum())
        cap = Tr("Figure 5. Mean real monthly earnings of participants and statistical twins by "
                 "month from leaving (95 % confidence bands), and their difference"
                 + (f"; {n_supp} suppressed month(s) left out" if n_supp else "") + ".",
                 "5. attēls. Dalībnieku un statistisko dvīņu vidējie reālie mēneša ienākumi pa "
                 "mēnešiem kopš dalības beigām (95 % ticamības joslas) un to starpība"
                 + (f"; {n_supp} konfidenciāli mēneši nav attēloti" if n_supp else "") + ".")
        text = block("p", Tr(
            "Levels, not changes: the curves show what participants and their twins earned each "
            "month. Before training the two curves should lie close together, since the twins "
            "were chosen to resemble the participants; a gap opening after leaving is the "
            "earnings effect.",
            "Līmeņi, nevis izmaiņas: līknes rāda, cik dalībnieki un viņu dvīņi nopelnīja katru "
            "mēnesi. Pirms mācībām abām līknēm jābūt tuvu, jo dvīņi izvēlēti līdzīgi "
            "dalībniekiem; plaisa, kas rodas pēc dalības beigām, ir ietekme uz ienākumiem."))
        return text + "\n" + _figure(img, "fig-income-curves", Tr(" ".join(alt_en),
                                                                   " ".join(alt_lv)), cap)

    # ---------------------------------------------------------------- twins quality

    def twins(self) -> str:
        out: list[str] = []
        settings = ((self.pub.manifest.get("control_group") or {}).get("settings") or {})
        threshold = float(settings.get("max_abs_smd") or 0.1)
        out.append(_h3(Tr("Matching and overlap", "Atlase un pārklāšanās"), "twins-groups"))
        g = self.pub.table("twins_groups")
        if g is not None and g.height:
            body = []
            for r in g.iter_rows(named=True):
                share = r.get("unmatched_share")
                cells = [f'<th scope="row">{esc(r.get("first_cohort"))} – '
                         f'{esc(r.get("last_cohort"))}</th>',
                         _td(fmt_int(r.get("n_treated"))), _td(fmt_int(r.get("n_matched"))),
                         _td(fmt_int(r.get("n_unmatched")) or f"< {self.k or ''}".strip()),
                         _td(fmt_value(share, "share")),
                         _td(fmt_num(r.get("max_abs_smd_before"), 3)),
                         _td(fmt_num(r.get("max_abs_smd_after"), 3)),
                         _td(span(Tr("passed", "izturēts") if r.get("gate_passed") else
                                  Tr("FAILED", "NEIZTURĒTS")), num=False, raw=True)]
                body.append("<tr>" + "".join(cells) + "</tr>")
            head = [Tr("Cohorts (start months)", "Kohortas (sākuma mēneši)"),
                    Tr("Participants", "Dalībnieki"), Tr("Matched", "Atrasti dvīņi"),
                    Tr("Not matched", "Bez dvīņiem"), Tr("Share lost", "Zaudētā daļa"),
                    Tr("Max |SMD| before", "Maks. |SMD| pirms"),
                    Tr("Max |SMD| after", "Maks. |SMD| pēc"),
                    Tr("Balance gate", "Līdzsvara pārbaude")]
            tot_t, tot_m = int(g["n_treated"].sum()), int(g["n_matched"].sum())
            # matched in coarser strata: a count only if no group's count was suppressed
            fb = g["n_matched_fallback"] if "n_matched_fallback" in g.columns else None
            tot_fb = None if fb is None or fb.null_count() else int(fb.sum())

            def overlap(lang: str) -> str:
                lost = fmt_value(1 - tot_m / tot_t, "share", lang)
                if lang == "en":
                    coarse = ("" if not tot_fb else f" {fmt_int(tot_fb, lang)} of them were "
                              "matched in coarser strata (see Methodology), as no twin shared "
                              "all the exact characteristics.")
                    return (f"{fmt_int(tot_m, lang)} of {fmt_int(tot_t, lang)} participants "
                            f"found statistical twins ({lost} lost for lack of comparable "
                            f"non-participants: the overlap loss).{coarse} Results describe "
                            "the matched participants.")
                coarse = ("" if not tot_fb else f" {fmt_int(tot_fb, lang)} no viņiem dvīņi "
                          "atrasti pēc mazāka pazīmju skaita (sk. Metodoloģija), jo neviens "
                          "dvīnis nesakrita visās precīzajās pazīmēs.")
                return (f"{fmt_int(tot_m, lang)} no {fmt_int(tot_t, lang)} dalībniekiem atrasti "
                        f"statistiskie dvīņi ({lost} zaudēti, jo nebija salīdzināmu "
                        f"nedalībnieku).{coarse} Rezultāti attiecas uz dalībniekiem, kuriem "
                        "atrasti dvīņi.")

            if tot_t:
                out.append(block("p", _both(overlap)))
            out.append(_table("t-twins-groups",
                              Tr("Matching summary by cohort group (overlap losses)",
                                 "Atlases kopsavilkums pa kohortu grupām (pārklāšanās zudumi)"),
                              head, "<tbody>" + "".join(body) + "</tbody>"))
            out.append(block("p", Tr(
                "Cohort groups with fewer matched participants than the disclosure threshold "
                "are not published; unmatched counts below the threshold are shown only as a "
                "share.",
                "Kohortu grupas, kurās atrasto dalībnieku ir mazāk par konfidencialitātes "
                "slieksni, nav publicētas; nesaskaņoto skaits zem sliekšņa parādīts tikai kā "
                "daļa."), cls="small"))
        else:
            out.append(block("p", Tr("No matching summary was published.",
                                     "Atlases kopsavilkums nav publicēts.")))
        out.append(_h3(Tr("Covariate balance", "Pazīmju līdzsvars"), "twins-balance"))
        b = self.pub.table("balance")
        if b is not None and b.height:
            out.append(self._balance(b, threshold))
        else:
            out.append(block("p", Tr("No balance table was published.",
                                     "Līdzsvara tabula nav publicēta.")))
        out.append(_h3(Tr("Trajectories before the start", "Trajektorijas pirms sākuma"),
                       "twins-pre"))
        p = self.pub.table("pre_trajectories")
        if p is not None and p.height:
            series = [s for s in PRE_SERIES if s[0] in set(p["series"].to_list())]
            img = fg.pre_trajectories_figure(p, series)
            alt = Tr("Three line charts of the 36 months before the start of training: mean "
                     "real earnings, share employed and days worked, each for participants, "
                     "their statistical twins and all candidate non-participants. Participants "
                     "and twins lie almost on top of each other; the candidates differ.",
                     "Trīs līniju diagrammas par 36 mēnešiem pirms mācību sākuma: vidējie "
                     "reālie ienākumi, nodarbināto daļa un nostrādātās dienas dalībniekiem, "
                     "viņu statistiskajiem dvīņiem un visiem kandidātiem. Dalībnieku un dvīņu "
                     "līknes gandrīz sakrīt; kandidātu līknes atšķiras.")
            out.append(block("p", Tr(
                "Matching used the months before the start, so participants and twins should "
                "follow the same path there; the dashed line (all possible comparison persons "
                "before matching) shows how different an unmatched comparison would have been.",
                "Atlasē izmantoti mēneši pirms sākuma, tāpēc dalībniekiem un dvīņiem tur "
                "jāvirzās pa vienu ceļu; raustītā līnija (visas iespējamās salīdzinājuma personas "
                "pirms atlases) rāda, cik atšķirīgs būtu salīdzinājums bez atlases.")))
            out.append(_figure(img, "fig-pre", alt, Tr(
                "Figure 7. Pre-period trajectories of participants, statistical twins and all "
                "candidates.",
                "7. attēls. Dalībnieku, statistisko dvīņu un visu kandidātu trajektorijas "
                "pirms sākuma.")))
        else:
            out.append(block("p", Tr("No pre-period trajectories were published.",
                                     "Trajektorijas pirms sākuma nav publicētas.")))
        return "\n".join(out)

    def _balance(self, b: pl.DataFrame, threshold: float) -> str:
        per_var = (b.with_columns(pl.col("smd_before").abs().alias("b"),
                                  pl.col("smd_after").abs().alias("a"))
                   .group_by("variable", maintain_order=True)
                   .agg(pl.col("b").max(), pl.col("a").max(), pl.len().alias("levels"))
                   .sort(["b", "variable"], descending=[True, False]))
        names = [f"{v} (max of {n} levels)" if n > 1 else v
                 for v, n in zip(per_var["variable"], per_var["levels"], strict=True)]
        img = fg.balance_figure(names, per_var["b"].fill_null(0).to_list(),
                                per_var["a"].fill_null(0).to_list(), threshold)
        over_after = per_var.filter(pl.col("a") > threshold).height
        over_before = per_var.filter(pl.col("b") > threshold).height
        worst = per_var.sort("a", descending=True).row(0, named=True)
        alt = Tr(f"Dot plot (love plot) of the absolute standardised mean difference between "
                 f"participants and comparison persons for {per_var.height} covariates, "
                 f"before matching (open circles) and after (filled), with a dashed line at "
                 f"{threshold:g}. Before matching {over_before} covariates exceed it, after "
                 f"matching {over_after}; the largest after matching is {worst['variable']} "
                 f"({fmt_num(worst['a'], 3)}).",
                 f"Punktu diagramma: absolūtā standartizētā vidējo starpība starp dalībniekiem "
                 f"un salīdzinājuma personām {per_var.height} pazīmēm pirms atlases (tukši "
                 f"apļi) un pēc tās (pilni), ar raustītu līniju pie {threshold:g}. Pirms "
                 f"atlases to pārsniedz {over_before} pazīmes, pēc atlases {over_after}; "
                 f"lielākā pēc atlases ir {worst['variable']} ({fmt_num(worst['a'], 3, 'lv')}).")
        text = block("p", Tr(
            f"The standardised mean difference (SMD) measures how far apart participants and "
            f"comparison persons are on a characteristic, in standard deviations. Below "
            f"{threshold:g} in absolute value counts as balanced. For categorical "
            f"characteristics the plot shows the largest difference over their levels.",
            f"Standartizētā vidējo starpība (SMD) rāda, cik tālu dalībnieki un salīdzinājuma "
            f"personas ir pēc kādas pazīmes, standartnovirzēs. Absolūtā vērtība zem "
            f"{threshold:g} nozīmē līdzsvaru. Kategoriālām pazīmēm attēlota lielākā starpība "
            f"starp to vērtībām."))
        fig = _figure(img, "fig-balance", alt, Tr(
            f"Figure 6. Covariate balance before and after matching (|SMD|, threshold "
            f"{threshold:g}).",
            f"6. attēls. Pazīmju līdzsvars pirms un pēc atlases (|SMD|, slieksnis "
            f"{threshold:g})."))
        body = []
        for r in b.sort("covariate").iter_rows(named=True):
            flag = _ok(r.get("smd_after")) and abs(r["smd_after"]) > threshold
            tr = '<tr class="flag">' if flag else "<tr>"
            body.append(
                f'{tr}<th scope="row"><code>{esc(r["covariate"])}</code></th>'
                + _td(fmt_num(r.get("smd_before"), 3)) + _td(fmt_num(r.get("smd_after"), 3))
                + _td(fmt_num(r.get("vr_before"), 2)) + _td(fmt_num(r.get("vr_after"), 2))
                + _td(fmt_num(r.get("ks_before"), 3)) + _td(fmt_num(r.get("ks_after"), 3))
                + "</tr>")
        table = _table("t-balance", Tr("Balance of every covariate before and after matching",
                                       "Katras pazīmes līdzsvars pirms un pēc atlases"),
                       [Tr("Covariate", "Pazīme"), Tr("SMD before", "SMD pirms"),
                        Tr("SMD after", "SMD pēc"),
                        Tr("Variance ratio before", "Dispersiju attiecība pirms"),
                        Tr("Variance ratio after", "Dispersiju attiecība pēc"),
                        Tr("KS before", "KS pirms"), Tr("KS after", "KS pēc")],
                       "<tbody>" + "".join(body) + "</tbody>")
        summary = span(Tr("Table: balance of every covariate",
                          "Tabula: katras pazīmes līdzsvars"))
        details = f"<details><summary>{summary}</summary>{table}</details>"
        return "\n".join([text, fig, details])

    # ---------------------------------------------------------------- subgroups

    def subgroups(self) -> str:
        out = [block("p", Tr(
            "Net effects by group of participants, each with its 95 % confidence interval. "
            "Groups hidden by disclosure control are listed as suppressed. With many groups "
            "some intervals exclude zero by chance alone; the Holm-adjusted p-value corrects "
            "for the number of groups compared within an indicator and is the one to use when "
            "asking whether a group differs from zero.",
            "Neto ietekme pa dalībnieku grupām, katrai ar 95 % ticamības intervālu. Grupas, "
            "kuras paslēpa konfidencialitātes kontrole, norādītas kā konfidenciālas. Ja grupu "
            "ir daudz, daži intervāli neietver nulli nejauši; Holma koriģētā p-vērtība ņem "
            "vērā salīdzināto grupu skaitu vienā rādītājā."))]
        fig_no = 8
        for ind in FOREST:
            rows = [r for (i, _, _), r in self.rows.items() if i == ind]
            if not rows:
                continue
            overall = self.row(ind)
            label = self.label(ind, overall)
            unit = self.unit(ind, overall)
            out.append(_h3(label, f"sub-{_slug(ind)}"))
            rows.sort(key=lambda r: (DIMENSION_ORDER.index(r["dimension"])
                                     if r["dimension"] in DIMENSION_ORDER else 99,
                                     r["dimension"], r["group"]))
            scale = 100.0 if is_share(unit) else 1.0
            frows: list[fg.ForestRow] = []
            last = None
            for r in rows:
                den = re.sub(r"\s*\(.*?\)", "", r.get("dimension_label_en") or r["dimension"])
                dlv = re.sub(r"\s*\(.*?\)", "", r.get("dimension_label_lv") or r["dimension"])
                dtext = den if den == dlv else f"{den} / {dlv}"
                if r["dimension"] != last and r["dimension"] != "all":
                    frows.append(fg.ForestRow(dtext, header=True))
                last = r["dimension"]
                gen, glv = r.get("group_label_en") or r["group"], r.get(
                    "group_label_lv") or r["group"]
                text = gen if gen == glv or len(gen) + len(glv) > 40 else f"{gen} / {glv}"
                if r["dimension"] == "all":
                    text = dtext
                net, low, high = (_scaled(r.get(c), scale) for c in ("net", "ci_low",
                                                                      "ci_high"))
                frows.append(fg.ForestRow("   " + text, net, low, high, bool(r["suppressed"])))
            xl = (AXIS.get(unit or "") or f"Net effect, {unit} / Neto ietekme, {unit}"
                  ).replace("\n", " / ").replace("Effect", "Net effect").replace(
                      "Ietekme", "Neto ietekme")
            ov = overall.get("net") if overall and not overall["suppressed"] else None
            img = fg.forest_figure(frows, xlabel=xl,
                                   overall=ov * scale if _ok(ov) else None)
            groups = [r for r in rows if r["dimension"] != "all"]
            supp = [r for r in groups if r["suppressed"]]
            sig = [r for r in groups if not r["suppressed"] and _ok(r.get("p_holm"))
                   and r["p_holm"] < 0.05]
            alt = Tr(f"Forest plot of the net effect on '{label.en}' with 95 % confidence "
                     f"intervals for {len(groups)} groups in "
                     f"{len({r['dimension'] for r in groups})} breakdowns; "
                     f"{len(supp)} groups are suppressed. {len(sig)} groups have a "
                     f"Holm-adjusted p-value below 0.05. The table below gives every value.",
                     f"Meža diagramma: neto ietekme uz '{label.lv}' ar 95 % ticamības "
                     f"intervāliem {len(groups)} grupām "
                     f"{len({r['dimension'] for r in groups})} griezumos; {len(supp)} grupas ir "
                     f"konfidenciālas. {len(sig)} grupām Holma koriģētā p-vērtība ir zem 0,05. "
                     f"Visas vērtības dotas tabulā zemāk.")
            out.append(_figure(img, f"fig-forest-{_slug(ind)}", alt, Tr(
                f"Figure {fig_no}. {label.en}: net effect by group (95 % CI; intervals "
                "wider than the plot end in an arrow).",
                f"{fig_no}. attēls. {label.lv}: neto ietekme pa grupām (95 % TI; intervāli, "
                "kas platāki par attēlu, beidzas ar bultu).")))
            fig_no += 1
            if supp:
                by_dim: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
                for r in supp:
                    en, lv = by_dim.setdefault((str(r.get("dimension_label_en")),
                                                str(r.get("dimension_label_lv"))), ([], []))
                    en.append(str(r.get("group_label_en") or r["group"]))
                    lv.append(str(r.get("group_label_lv") or r["group"]))
                names_en = "; ".join(f"{d[0]}: {', '.join(g[0])}" for d, g in by_dim.items())
                names_lv = "; ".join(f"{d[1]}: {', '.join(g[1])}" for d, g in by_dim.items())
                out.append(block("p", Tr(f"Suppressed groups ({len(supp)}): {names_en}.",
                                         f"Konfidenciālās grupas ({len(supp)}): {names_lv}."),
                                 cls="small"))
            out.append(self._forest_table(ind, rows, unit, label))
        return "\n".join(out)

    def _forest_table(self, ind: str, rows: list[Row], unit: str | None, label: Tr) -> str:
        tid = f"t-sub-{_slug(ind)}"
        marks = _Marks(tid, self.k)
        body, last = [], None
        ncols = 9
        for r in rows:
            if r["dimension"] != last:
                if last is not None:
                    body.append("</tbody>")
                last = r["dimension"]
                dl = Tr(r.get("dimension_label_en") or last, r.get("dimension_label_lv") or last)
                body.append(f'<tbody><tr class="group"><th scope="rowgroup" colspan="{ncols}">'
                            f"{span(dl)}</th></tr>")
            gl = Tr(r.get("group_label_en") or r["group"], r.get("group_label_lv") or r["group"])
            cells = [f'<th scope="row">{span(gl)}</th>']
            if r["suppressed"]:
                cells += [f'<td class="num supp">{marks.cell(r.get("suppression_reason"))}'
                          "</td>"] * (ncols - 1)
            else:
                cells += [_td(fmt_int(r.get("n_participants"))), _td(fmt_int(r.get("n_twins"))),
                          _td(fmt_value(r.get("participants"), unit) or NA.en),
                          _td(fmt_value(r.get("twins"), unit) or NA.en),
                          _td(fmt_effect(r.get("net"), unit) or NA.en),
                          _td(_ci_cell(r, unit) or NA.en), _td(fmt_p(r.get("p_value")) or NA.en),
                          _td(fmt_p(r.get("p_holm")) or NA.en)]
            body.append("<tr>" + "".join(cells) + "</tr>")
        body.append("</tbody>")
        u = unit_text(unit, effect=True)
        head = [Tr("Group", "Grupa"), Tr("Participants (n)", "Dalībnieki (n)"),
                Tr("Twins (n)", "Dvīņi (n)"), Tr("Participants", "Dalībnieki"),
                Tr("Twins", "Dvīņi"), Tr(f"Net effect ({u.en})", f"Neto ietekme ({u.lv})"),
                Tr("95 % CI", "95 % TI"), Tr("p-value", "p-vērtība"),
                Tr("Holm-adjusted p", "Holma koriģētā p")]
        note = block("p", Tr("n/a: not applicable (e.g. no adjusted p-value for all "
                             "participants, a single comparison).",
                             "n/p: nav piemērojams (piem., visiem dalībniekiem koriģētās "
                             "p-vērtības nav, jo tas ir viens salīdzinājums)."), cls="small")
        table = _table(tid, Tr(f"{label.en}: net effect by group",
                               f"{label.lv}: neto ietekme pa grupām"), head, "".join(body),
                       notes=marks.notes() + note)
        summary = span(Tr(f"Table: {label.en} by group", f"Tabula: {label.lv} pa grupām"))
        return f"<details><summary>{summary}</summary>{table}</details>"

    # ---------------------------------------------------------------- Kaplan-Meier

    def km(self) -> str:
        k = self.pub.table("career_step_km")
        if k is None or k.height == 0:
            return block("p", Tr("No Kaplan-Meier curves were published.",
                                 "Kaplana-Meijera līknes nav publicētas."))
        img = fg.km_figure(k)
        shown = k.filter(~pl.col("suppressed"))
        alt_en = ["Step chart of Kaplan-Meier curves: the share of participants and of their "
                  "statistical twins who have not yet made a career step, by month from "
                  "leaving training, with 95 % confidence bands."]
        alt_lv = ["Pakāpju diagramma ar Kaplana-Meijera līknēm: dalībnieku un viņu statistisko "
                  "dvīņu daļa, kuri vēl nav spēruši karjeras soli, pa mēnešiem kopš dalības "
                  "beigām, ar 95 % ticamības joslām."]
        for m in (6, 12, 24):
            vals = {r["arm"]: r["survival"] for r in shown.filter(pl.col("month") == m
                                                                  ).iter_rows(named=True)}
            if "participants" in vals and "twins" in vals:
                alt_en.append(f"Month {m}: participants {fmt_value(vals['participants'], 'share')}"
                              f", twins {fmt_value(vals['twins'], 'share')}.")
                alt_lv.append(f"{m}. mēnesis: dalībnieki "
                              f"{fmt_value(vals['participants'], 'share', 'lv')}, dvīņi "
                              f"{fmt_value(vals['twins'], 'share', 'lv')}.")
        n_supp = int(k["suppressed"].sum())
        text = block("p", Tr(
            "A career step is an occupation upgrade or a pay jump over the entry month. The "
            "curves start at 100 % when training ends and fall as people make their first "
            "step; a lower curve means faster steps. Kaplan-Meier estimates allow for people "
            "whose follow-up ends early (censoring). Months where fewer than "
            f"{self.k or 'the minimum number of'} persons remain at risk are suppressed.",
            "Karjeras solis ir augstāka profesija vai algas lēciens salīdzinājumā ar sākuma "
            "mēnesi. Līknes sākas ar 100 % mācību beigās un krītas, kad cilvēki sper pirmo "
            "soli; zemāka līkne nozīmē ātrākus soļus. Kaplana-Meijera novērtējums ņem vērā "
            "cilvēkus, kuru novērošana beidzas agrāk (cenzēšana). Mēneši, kuros riskam pakļauto "
            f"personu ir mazāk par {self.k or 'minimālo skaitu'}, ir konfidenciāli."))
        fig = _figure(img, "fig-km", Tr(" ".join(alt_en), " ".join(alt_lv)), Tr(
            "Figure 11. Time to the next career step after leaving (Kaplan-Meier, 95 % CI)"
            + (f"; {n_supp} suppressed point(s) left out" if n_supp else "") + ".",
            "11. attēls. Laiks līdz nākamajam karjeras solim pēc dalības beigām "
            "(Kaplans-Meijers, 95 % TI)"
            + (f"; {n_supp} konfidenciāli punkti nav attēloti" if n_supp else "") + "."))
        marks = _Marks("t-km", self.k)
        months = [m for m in (0, 3, 6, 12, 18, 24, 30, 36) if m in set(k["month"].to_list())]
        body = []
        for arm, lab in (("participants", Tr("Participants", "Dalībnieki")),
                         ("twins", Tr("Statistical twins", "Statistiskie dvīņi"))):
            d = {r["month"]: r for r in k.filter(pl.col("arm") == arm).iter_rows(named=True)}
            for what, wl in (("survival", Tr("without a step, %", "bez soļa, %")),
                             ("at_risk", Tr("at risk (n)", "riskam pakļauti (n)"))):
                cells = [f'<th scope="row">{span(lab)}: {span(wl)}</th>']
                for m in months:
                    r = d.get(m)
                    if r is None:
                        cells.append(_td(""))
                    elif r["suppressed"]:
                        cells.append(f'<td class="num supp">'
                                     f'{marks.cell(r.get("suppression_reason"))}</td>')
                    elif what == "survival":
                        cells.append(_td(fmt_num(100 * r["survival"], 1)
                                         if _ok(r["survival"]) else NA.en))
                    else:
                        cells.append(_td(fmt_int(r["at_risk"])))
                body.append("<tr>" + "".join(cells) + "</tr>")
        table = _table("t-km", Tr("Kaplan-Meier estimates at selected months from leaving",
                                  "Kaplana-Meijera novērtējumi izvēlētos mēnešos pēc dalības "
                                  "beigām"),
                       [Tr("Series", "Sērija"), *(Tr(str(m), str(m)) for m in months)],
                       "<tbody>" + "".join(body) + "</tbody>", notes=marks.notes())
        return "\n".join([text, fig, table])

    # ---------------------------------------------------------------- all indicators

    def indicators(self) -> str:
        allrows = [r for (i, d, g), r in self.rows.items() if d == "all" and g == "all"
                   and not i.startswith(("event_study_", "income_curve"))]
        order = list(FAMILIES)

        def key(r: Row) -> tuple[Any, ...]:
            fam = r.get("family") or ""
            base = re.sub(r"_h\d+$", "", r["indicator"])
            ind = r["indicator"]
            return (order.index(fam) if fam in order else len(order), fam,
                    PRIORITY.index(ind) if ind in PRIORITY else len(PRIORITY), base,
                    r.get("horizon") or 0, ind)

        allrows.sort(key=key)
        marks = _Marks("t-all", self.k)
        holm = any(_ok(r.get("p_holm")) for r in allrows if not r["suppressed"])
        ncols = 10 + holm
        body, last = [], object()
        for r in allrows:
            fam = r.get("family")
            if fam != last:
                if body:
                    body.append("</tbody>")
                last = fam
                ft = FAMILIES.get(fam or "", Tr(str(fam or "other"), str(fam or "cits")))
                body.append(f'<tbody><tr class="group"><th scope="rowgroup" colspan="{ncols}">'
                            f"{span(ft)}</th></tr>")
            unit = r.get("unit")
            ind = r["indicator"]
            contrast = str(r.get("contrast") or "")
            cells = [f'<th scope="row"><a href="#def-{_slug(ind)}">'
                     f"{span(self.label(ind, r))}</a></th>",
                     _td(str(r.get("horizon") if r.get("horizon") is not None else "")),
                     _td(span(unit_text(unit)), num=False, raw=True),
                     _td(span(CONTRAST.get(contrast, Tr(contrast, contrast))), num=False,
                         raw=True)]
            if r["suppressed"]:
                cells += [f'<td class="num supp">{marks.cell(r.get("suppression_reason"))}'
                          "</td>"] * (ncols - 4)
            else:
                cost = (r.get("family") == "roi" and r.get("twins") is None
                        and str(unit).startswith("EUR per EUR"))
                part = (fmt_num(r.get("participants"), 0) + "\u2009\u00b9" if cost and
                        _ok(r.get("participants")) else fmt_value(r.get("participants"), unit))
                cells += [_td(f"{fmt_int(r.get('n_participants'))} / "
                              f"{fmt_int(r.get('n_twins'))}"),
                          _td(part or NA.en), _td(fmt_value(r.get("twins"), unit) or NA.en),
                          _td(fmt_effect(r.get("net"), unit) or NA.en),
                          _td(_ci_cell(r, unit) or NA.en), _td(fmt_p(r.get("p_value")) or NA.en)]
                if holm:
                    cells.append(_td(fmt_p(r.get("p_holm")) or NA.en))
            body.append("<tr>" + "".join(cells) + "</tr>")
        if body:
            body.append("</tbody>")
        head = [Tr("Indicator", "Rādītājs"), Tr("Months after leaving", "Mēneši pēc beigām"),
                Tr("Unit", "Mērvienība"), Tr("Comparison", "Salīdzinājums"),
                Tr("Persons: participants / twins", "Personas: dalībnieki / dvīņi"),
                Tr("Participants", "Dalībnieki"), Tr("Twins", "Dvīņi"),
                Tr("Net effect", "Neto ietekme"), Tr("95 % CI", "95 % TI"),
                Tr("p-value", "p-vērtība")]
        if holm:
            head.append(Tr("Holm-adjusted p", "Holma koriģētā p"))
        notes = marks.notes() + block("p", Tr(
            "Comparison: DiD = difference in differences (change since before training, "
            "participants minus twins); level = levels after leaving compared directly; "
            "gross = participants only. Shares are shown in %, their net effects in percentage "
            "points. ¹ For return indicators the participants' column holds the mean training "
            "cost per participant (EUR) that the net effect is divided by. n/a: not "
            "applicable. Holm-adjusted p-values are given for the subgroups (section "
            "'Effects by subgroup'); for all participants there is a single comparison.",
            "Salīdzinājums: DiD = starpību starpība (izmaiņa kopš laika pirms mācībām, "
            "dalībnieki mīnus dvīņi); līmenis = līmeņi pēc dalības beigām salīdzināti tieši; "
            "bruto = tikai dalībnieki. Daļas parādītas %, to neto ietekme – procentpunktos. "
            "¹ Atdeves rādītājiem dalībnieku kolonnā ir vidējās mācību izmaksas uz dalībnieku "
            "(EUR), ar kurām dalīta neto ietekme. n/p: nav piemērojams. Holma koriģētās "
            "p-vērtības dotas grupām (sadaļa 'Ietekme pa grupām'); visiem dalībniekiem ir "
            "viens salīdzinājums."), cls="small")
        table = _table("t-all", Tr(f"All {len(allrows)} indicators, all participants",
                                   f"Visi {len(allrows)} rādītāji, visi dalībnieki"),
                       head, "".join(body), notes=notes, cls="wide")
        return table + "\n" + self.definitions([r["indicator"] for r in allrows])

    def definitions(self, ids: Sequence[str]) -> str:
        items = []
        for ind in ids:
            d = self.pub.definitions.get(ind) or {}
            r = self.row(ind)
            lab = self.label(ind, r)
            den = d.get("definition_en") or ""
            dlv = d.get("definition_lv")
            lv_html = (esc(dlv) if dlv else
                       '(definīcija pieejama tikai angļu valodā) <span lang="en">'
                       f"{esc(den)}</span>")
            pop = d.get("population") or ""
            unit = d.get("unit") or self.unit(ind, r) or ""
            items.append(
                f'<dt id="def-{_slug(ind)}">{span(lab)} <code>{esc(ind)}</code></dt>'
                f"<dd>{block('p', Tr(esc(den), lv_html), raw=True)}"
                + block("p", Tr(f"Population: {esc(pop)}. Unit: {esc(unit)}.",
                                f'Populācija: <span lang="en">{esc(pop)}</span>. Mērvienība: '
                                f'{esc(unit_text(unit).lv)}.'), raw=True, cls="small")
                + "</dd>")
        return (_h3(Tr("Definitions", "Definīcijas"), "definitions")
                + f'<dl class="defs">{"".join(items)}</dl>')

    # ---------------------------------------------------------------- methodology

    def methodology(self) -> str:
        cg = (self.pub.manifest.get("control_group") or {}).get("settings") or {}
        ratio = cg.get("ratio", "several")
        caliper = cg.get("caliper")
        exact = [EXACT.get(v, Tr(v, v)) for v in (cg.get("exact") or [])]
        ex_en = ", ".join(e.en for e in exact) or "basic characteristics"
        ex_lv = ", ".join(e.lv for e in exact) or "pamatpazīmes"
        steps = [[EXACT.get(v, Tr(v, v)) for v in group] for group in (cg.get("coarsen") or [])]
        co_en = co_lv = ""
        if steps:
            co_en = (" Participants without such a twin were matched again with fewer exact "
                     "characteristics: " + "; then ".join(
                         "without " + " and ".join(e.en for e in g) for g in steps) + ".")
            co_lv = (" Dalībniekiem bez šāda dvīņa dvīņus meklēja vēlreiz pēc mazāka precīzo "
                     "pazīmju skaita: " + "; pēc tam ".join(
                         "bez pazīmes " + " un ".join(e.lv for e in g) for g in steps) + ".")
        cal_en = (f" within {fmt_num(caliper, 2)} standard deviations of the propensity score"
                  if _ok(caliper) else "")
        cal_lv = (f" ne tālāk par {fmt_num(caliper, 2, 'lv')} tieksmes rādītāja "
                  "standartnovirzēm" if _ok(caliper) else "")
        vintage = self.pub.manifest.get("data_vintage", "")
        paras: list[tuple[Tr, Tr]] = [
            (Tr("Statistical twins (risk-set matching)",
                "Statistiskie dvīņi (atlase no riska kopas)"), Tr(
                f"Every participant is compared with up to {ratio} statistical twins: people "
                f"who had not (yet) started training in the month the participant started, who "
                f"were identical in {ex_en}, and who had a similar earnings, employment, "
                f"unemployment and sickness history over the preceding years{cal_en}.{co_en} "
                "People who start training later can serve as twins until they start, and one "
                "person can be the twin of several participants.",
                f"Katru dalībnieku salīdzina ar līdz {ratio} statistiskajiem dvīņiem: "
                f"cilvēkiem, kuri mēnesī, kad dalībnieks sāka mācības, vēl nebija sākuši "
                f"mācības, kuriem bija tādas pašas pazīmes ({ex_lv}) un līdzīga ienākumu, "
                f"nodarbinātības, bezdarba un slimošanas vēsture iepriekšējos gados{cal_lv}."
                f"{co_lv} Cilvēki, kuri mācības sāk vēlāk, var būt dvīņi līdz savam sākumam, "
                "un viena persona var būt vairāku dalībnieku dvīnis.")),
            (Tr("Difference in differences", "Starpību starpība"), Tr(
                "Most indicators compare changes, not levels: the participants' change from the "
                "months before training to the months after leaving, minus the same change "
                "for their twins. Differences between the groups that were already there before "
                "training and stay constant cancel out. Indicators marked 'level' "
                "compare the situation after leaving directly (the EECR06 rates already compare "
                "each person with their own entry month).",
                "Lielākā daļa rādītāju salīdzina izmaiņas, nevis līmeņus: dalībnieku izmaiņu no "
                "mēnešiem pirms mācībām līdz mēnešiem pēc dalības beigām, atņemot tādu pašu "
                "izmaiņu viņu dvīņiem. Starpības starp grupām, kas bija jau pirms mācībām un "
                "nemainās, savstarpēji izslēdzas. Rādītāji ar atzīmi 'līmenis' salīdzina "
                "situāciju pēc dalības beigām tieši (EECR06 rādītāji jau "
                "salīdzina katru personu ar tās sākuma mēnesi).")),
            (Tr("What the net effect means", "Ko nozīmē neto ietekme"), Tr(
                "The net effect is the average effect of training on those who took part: how "
                "much better or worse the participants did than they would have done without "
                "training, with their twins standing in for that situation. It says nothing "
                "directly about the effect on people who did not take part, and it includes "
                "whatever participants did instead of working while training.",
                "Neto ietekme ir mācību vidējā ietekme uz tiem, kuri tajās piedalījās: cik daudz "
                "labāk vai sliktāk dalībniekiem klājās, nekā būtu klājies bez mācībām, ko "
                "atspoguļo viņu dvīņi. Tā tieši neko nesaka par ietekmi uz cilvēkiem, kuri "
                "nepiedalījās.")),
            (Tr("Assumptions", "Pieņēmumi"), Tr(
                "Conditional parallel trends: without training, participants' outcomes would "
                "have developed like those of their twins, given everything used in matching. "
                "No anticipation: people did not change their behaviour before the start because "
                "they expected to train (for example by leaving a job to enrol). The placebo "
                "months of the event study and the pre-period trajectories are checks of both: "
                "estimates close to zero before the start support them, but cannot prove them.",
                "Nosacīti paralēlas tendences: bez mācībām dalībnieku rezultāti būtu mainījušies "
                "tāpat kā viņu dvīņiem, ņemot vērā visu atlasē izmantoto. Nav iepriekšējas "
                "reakcijas: cilvēki nemainīja uzvedību pirms sākuma, gaidot mācības (piemēram, "
                "neaizgāja no darba, lai mācītos). Notikumu analīzes placebo mēneši un "
                "trajektorijas pirms sākuma pārbauda abus pieņēmumus: novērtējumi tuvu nullei "
                "pirms sākuma tos atbalsta, bet nevar pierādīt.")),
            (Tr("Uncertainty", "Nenoteiktība"), Tr(
                "Because a twin may be used for several participants, standard errors allow for "
                "this reuse (Abadie-Imbens variance); confidence intervals are 95 % normal "
                "intervals. The event study also shows a 95 % uniform band that covers the "
                "whole curve at once. Subgroup p-values are adjusted for multiple comparisons "
                "within each indicator (Holm; Benjamini-Hochberg is also published).",
                "Tā kā vienu dvīni var izmantot vairākiem dalībniekiem, standartkļūdas ņem vērā "
                "šo atkārtoto izmantošanu (Abadie-Imbensa dispersija); ticamības intervāli ir "
                "95 % normālie intervāli. Notikumu analīzē parādīta arī 95 % vienlaidu josla, "
                "kas aptver visu līkni uzreiz. Grupu p-vērtības koriģētas daudzkārtējiem "
                "salīdzinājumiem katrā rādītājā (Holma metode; publicēta arī "
                "Benjamini-Hohberga).")),
            (Tr("Censoring", "Cenzēšana"), Tr(
                f"Register data end in {vintage}. People who left training recently cannot yet "
                "be observed 12 or 24 months later; they are left out of those indicators, so "
                "the number of persons falls with the horizon and later horizons describe "
                "earlier cohorts. The Kaplan-Meier curves use everyone for as long as they are "
                "observed.",
                f"Reģistru dati beidzas {vintage}. Cilvēkus, kuri mācības beiguši nesen, vēl "
                "nevar novērot 12 vai 24 mēnešus vēlāk; viņi šajos rādītājos nav iekļauti, tāpēc "
                "personu skaits ar laika horizontu samazinās un tālāki horizonti raksturo "
                "agrākās kohortas. Kaplana-Meijera līknes izmanto katru cilvēku tik ilgi, cik "
                "viņš ir novērots.")),
            (Tr("Main caveat: selection on unobservables",
                "Galvenais ierobežojums: atlase pēc nenovērojamām pazīmēm"), Tr(
                "Twins resemble participants in everything the registers record, not in what "
                "they do not record: motivation, ability, health, family plans, an employer's "
                "decision to send someone on a course. If such factors drive both taking up "
                "training and later outcomes, the net effects are biased, most likely upwards. "
                "Parallel trends before the start make this less likely but do not rule it out. "
                "Read the results as the best estimate under the assumptions above, not as "
                "proof.",
                "Dvīņi līdzinās dalībniekiem visā, ko reģistrē reģistri, bet ne tajā, ko tie "
                "nereģistrē: motivācijā, spējās, veselībā, ģimenes plānos, darba devēja lēmumā "
                "nosūtīt darbinieku mācīties. Ja šādi faktori ietekmē gan dalību mācībās, gan "
                "vēlākos rezultātus, neto ietekme ir novērtēta neprecīzi, visdrīzāk pārspīlēta. "
                "Paralēlas tendences pirms sākuma to padara mazāk ticamu, bet neizslēdz. "
                "Rezultāti ir labākais novērtējums pie iepriekš minētajiem pieņēmumiem, nevis "
                "pierādījums.")),
        ]
        out = []
        for i, (title, text) in enumerate(paras):
            out.append(_h3(title, f"method-{i + 1}"))
            out.append(block("p", text))
        est = self.pub.manifest.get("estimator") or {}
        if est:
            rows = "".join(f"<dt><code>{esc(k)}</code></dt><dd lang=\"en\">{esc(v)}</dd>"
                           for k, v in sorted(est.items()))
            out.append(_h3(Tr("Technical details (from the manifest)",
                              "Tehniskā informācija (no manifesta)"), "method-technical"))
            out.append(f'<dl class="tech">{rows}</dl>')
        return "\n".join(out)

    # ---------------------------------------------------------------- data quality

    def data_quality(self) -> str:
        q = self.pub.table("data_quality")
        if q is None or q.height == 0:
            return block("p", Tr("No data-quality summary was published.",
                                 "Datu kvalitātes kopsavilkums nav publicēts."))
        cols = [c for c in ("rows_in", "accepted", "quarantined", "duplicates", "superseded")
                if c in q.columns]
        body = []
        for r in q.sort("table").iter_rows(named=True):
            cells = [f'<th scope="row"><code>{esc(r["table"])}</code></th>']
            cells += [_td(fmt_int(r.get(c))) for c in cols]
            if "ok" in q.columns:
                cells.append(_td(span(Tr("yes", "jā") if r.get("ok") else Tr("NO", "NĒ")),
                                 num=False, raw=True))
            body.append("<tr>" + "".join(cells) + "</tr>")
        names = {"rows_in": Tr("Rows received", "Saņemtās rindas"),
                 "accepted": Tr("Accepted", "Pieņemtas"),
                 "quarantined": Tr("Quarantined", "Karantīnā"),
                 "duplicates": Tr("Duplicates dropped", "Dublikāti"),
                 "superseded": Tr("Superseded by corrections", "Aizstātas ar labojumiem")}
        head = [Tr("Register table", "Reģistra tabula"), *(names[c] for c in cols)]
        if "ok" in q.columns:
            head.append(Tr("Checks passed", "Pārbaudes izturētas"))
        n = q.height
        rows_in = int(q["rows_in"].fill_null(0).sum()) if "rows_in" in q.columns else 0
        quar = int(q["quarantined"].fill_null(0).sum()) if "quarantined" in q.columns else 0
        bad = int((~q["ok"].fill_null(False)).sum()) if "ok" in q.columns else 0
        text = block("p", _both(lambda lang: (
            f"{n} register tables were validated against their data contracts: "
            f"{fmt_int(rows_in, lang)} rows received, {fmt_int(quar, lang)} quarantined "
            f"(rejected rows kept aside for correction); {bad} table(s) failed a "
            "reconciliation check. Counts are register rows, not persons."
            if lang == "en" else
            f"{n} reģistru tabulas pārbaudītas pret datu līgumiem: saņemtas "
            f"{fmt_int(rows_in, lang)} rindas, {fmt_int(quar, lang)} ievietotas karantīnā "
            f"(noraidītās rindas, kas atstātas labošanai); {bad} tabula(-as) neizturēja "
            "saskaņošanas pārbaudi. Skaitļi ir reģistru rindas, nevis personas.")))
        return text + "\n" + _table("t-dq", Tr("Rows per register table",
                                               "Rindas pa reģistru tabulām"), head,
                                    "<tbody>" + "".join(body) + "</tbody>")

    # ---------------------------------------------------------------- disclosure

    def disclosure(self) -> str:
        d = self.pub.disclosure
        if not d:
            return block("p", Tr("No disclosure report was published.",
                                 "Konfidencialitātes pārskats nav publicēts."))
        s = d.get("settings") or {}
        k = s.get("min_persons", self.k)
        rules_en = [f"Threshold: a cell is hidden when it has fewer than {k} participants or "
                    f"fewer than {k} twins."]
        rules_lv = [f"Slieksnis: šūnu paslēpj, ja tajā ir mazāk nekā {k} dalībnieku vai mazāk "
                    f"nekā {k} dvīņu."]
        if s.get("dominance_k") is not None:
            dn, dk = s.get("dominance_n"), 100 * float(s["dominance_k"])
            rules_en.append(f"Dominance ({dn}, {dk:g} %): hidden when the {dn} largest "
                            f"contributions make up more than {dk:g} % of a total.")
            rules_lv.append(f"Dominance ({dn}, {dk:g} %): paslēpj, ja {dn} lielākie ieguldījumi "
                            f"veido vairāk nekā {dk:g} % no kopsummas.")
        if s.get("p_percent") is not None:
            p = float(s["p_percent"])
            rules_en.append(f"p% rule ({p:g} %): hidden when the second-largest contributor "
                            f"could estimate the largest to within {p:g} %.")
            rules_lv.append(f"p% noteikums ({p:g} %): paslēpj, ja otrs lielākais ieguldītājs "
                            f"varētu novērtēt lielāko {p:g} % robežās.")
        if s.get("secondary"):
            rules_en.append("Secondary suppression: further cells are hidden so that no hidden "
                            "value can be worked out from totals or from other breakdowns.")
            rules_lv.append("Sekundārā konfidencialitāte: paslēpj vēl citas šūnas, lai nevienu "
                            "paslēptu vērtību nevarētu aprēķināt no kopsummām vai citiem "
                            "griezumiem.")
        if s.get("round_base"):
            rules_en.append(f"Counts are rounded to multiples of {s['round_base']}.")
            rules_lv.append(f"Skaiti noapaļoti līdz {s['round_base']} daudzkārtņiem.")
        audit = d.get("audit") or {}
        ok = d.get("ok")
        out = [block("p", Tr(
            "Before publication every cell of the indicator table was checked against the "
            "rules below. All measured values of a hidden cell (rates, means, effects, "
            "intervals, p-values and its person counts) are removed from the publication.",
            "Pirms publicēšanas katra rādītāju tabulas šūna pārbaudīta pēc zemāk minētajiem "
            "noteikumiem. Visas paslēptās šūnas vērtības (daļas, vidējie, ietekmes, intervāli, "
            "p-vērtības un personu skaits) no publikācijas ir izņemtas."))]
        out.append('<ul class="rules">' + "".join(
            block("li", Tr(e, lv)) for e, lv in zip(rules_en, rules_lv, strict=True)) + "</ul>")
        cin, cpub, csup = d.get("cells_in"), d.get("cells_published"), d.get("cells_suppressed")
        out.append(block("p", _both(lambda lang: (
            f"Cells: {fmt_int(cin, lang)} in the table, {fmt_int(cpub, lang)} published, "
            f"{fmt_int(csup, lang)} suppressed. Intruder audit: "
            f"{fmt_int(audit.get('cells_checked'), lang)} "
            f"hidden cells ({fmt_int(audit.get('quantities_checked'), lang)} hidden values) "
            f"attacked by linear programming in {d.get('audit_rounds', '?')} round(s); values "
            f"recovered: {fmt_int(audit.get('recovered'), lang) or '0'}. Result: "
            f"{'pass' if ok else 'FAIL'}."
            if lang == "en" else
            f"Šūnas: tabulā {fmt_int(cin, lang)}, publicētas {fmt_int(cpub, lang)}, "
            f"paslēptas {fmt_int(csup, lang)}. Uzbrucēja audits: "
            f"{fmt_int(audit.get('cells_checked'), lang)} paslēptās šūnas "
            f"({fmt_int(audit.get('quantities_checked'), lang)} paslēptas vērtības) pārbaudītas "
            f"ar lineāro programmēšanu {d.get('audit_rounds', '?')} kārtās; atjaunotas vērtības: "
            f"{fmt_int(audit.get('recovered'), lang) or '0'}. Rezultāts: "
            f"{'izturēts' if ok else 'NEIZTURĒTS'}.")), cls="lead"))
        by = d.get("suppressed_by_reason") or {}
        if by:
            body = "".join(
                f'<tr><th scope="row"><code>{esc(r)}</code></th>'
                f"{_td(span(_reason(r, k)), num=False, raw=True)}{_td(fmt_int(n))}</tr>"
                for r, n in sorted(by.items()))
            out.append(_table("t-disclosure", Tr("Suppressed cells by reason",
                                                 "Paslēptās šūnas pa iemesliem"),
                              [Tr("Reason code", "Iemesla kods"), Tr("Meaning", "Nozīme"),
                               Tr("Cells", "Šūnas")], f"<tbody>{body}</tbody>"))
        out.append(block("p", Tr(
            "The list of every suppressed cell is in disclosure_report.md of the publication. "
            "The income curves and event-study curves were controlled with the same rules; "
            "Kaplan-Meier points are hidden where fewer persons than the threshold remain at "
            "risk; the matching tables aggregate groups of at least the threshold.",
            "Visu paslēpto šūnu saraksts ir publikācijas failā disclosure_report.md. Ienākumu "
            "līknēm un notikumu analīzes līknēm piemēroti tie paši noteikumi; Kaplana-Meijera "
            "punkti paslēpti, ja riskam pakļauto personu ir mazāk par slieksni; atlases tabulas "
            "apvieno grupas ar vismaz sliekšņa lielumu."), cls="small"))
        return "\n".join(out)

    # ---------------------------------------------------------------- page

    def html(self) -> str:
        from impact import __version__

        sections: list[tuple[str, Tr, Callable[[], str]]] = [
            ("headline", Tr("Headline results", "Galvenie rezultāti"), self.headline),
            ("event-study", Tr("Effects over time (event study)",
                               "Ietekme laika gaitā (notikumu analīze)"), self.event_study),
            ("income-curves", Tr("Earnings of participants and twins",
                                 "Dalībnieku un dvīņu ienākumi"), self.income_curves),
            ("twins", Tr("Quality of the statistical twins", "Statistisko dvīņu kvalitāte"),
             self.twins),
            ("subgroups", Tr("Effects by subgroup", "Ietekme pa grupām"), self.subgroups),
            ("career", Tr("Time to the next career step", "Laiks līdz nākamajam karjeras solim"),
             self.km),
            ("indicators", Tr("All indicators", "Visi rādītāji"), self.indicators),
            ("method", Tr("Methodology and assumptions", "Metodoloģija un pieņēmumi"),
             self.methodology),
            ("data-quality", Tr("Data quality", "Datu kvalitāte"), self.data_quality),
            ("disclosure", Tr("Disclosure control", "Konfidencialitātes kontrole"),
             self.disclosure),
        ]
        body = "\n".join(_section(sid, t, f()) for sid, t, f in sections)
        rid = self.pub.run_id
        title_en, title_lv = f"{TITLE.en} – {rid}", f"{TITLE.lv} – {rid}"
        footer = block("p", Tr(
            f"Generated by impact {__version__} from publication {rid}; it reads only the "
            "publication folder. This page needs no network connection.",
            f"Izveidots ar impact {__version__} no publikācijas {rid}; tiek lasīta tikai "
            "publikācijas mape. Lapai nav nepieciešams tīkla savienojums."), cls="small")
        return "".join([
            "<!DOCTYPE html>\n",
            f'<html lang="en" data-title-en="{esc(title_en)}" data-title-lv="{esc(title_lv)}">\n',
            "<head>\n<meta charset=\"utf-8\">\n",
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
            "form-action 'none'; base-uri 'none'\">\n",
            f'<meta name="generator" content="impact {esc(__version__)}">\n',
            f"<title>{esc(title_en)}</title>\n<style>{CSS}</style>\n",
            f"<script>{HEAD_JS}</script>\n</head>\n<body>\n",
            '<a class="skip" href="#main">' + span(Tr("Skip to content", "Pāriet uz saturu"))
            + "</a>\n",
            f'<header class="wrap">\n{self.header()}\n</header>\n',
            f'<div class="wrap">{self.nav([(s, t) for s, t, _ in sections])}</div>\n',
            f'<main id="main" class="wrap">\n{body}\n</main>\n',
            f'<footer class="wrap">{footer}</footer>\n',
            f"<script>{BODY_JS}</script>\n</body>\n</html>\n",
        ])


# --------------------------------------------------------------------------- static parts

CSS = """
:root{--fg:#1b1b1b;--muted:#555;--line:#d6d6d6;--accent:#1f5fa8;--soft:#f4f6f9}
*{box-sizing:border-box}
html{font-size:100%}
body{margin:0;color:var(--fg);background:#fff;line-height:1.5;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:64rem;margin:0 auto;padding:0 1.25rem}
header.wrap{padding-top:1rem}
h1{font-size:1.7rem;line-height:1.25;margin:.6rem 0 1rem}
h2{font-size:1.35rem;margin:2.4rem 0 .8rem;padding-top:.6rem;border-top:2px solid var(--accent)}
h3{font-size:1.08rem;margin:1.6rem 0 .5rem}
p{margin:.5rem 0}
a{color:var(--accent)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88em}
code.hash{word-break:break-all}
.lead{font-size:1.05rem}
.small,.notes{font-size:.85rem;color:var(--muted)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0 0 1rem;
font-size:.92rem}
dl.meta dt{font-weight:600}
dl.meta dd{margin:0}
.notice{border-left:4px solid var(--accent);background:var(--soft);padding:.6rem .9rem;
margin:.8rem 0}
.notice.warn{border-color:#b45309;background:#fff7ed}
.langswitch{float:right;display:flex;gap:.3rem}
.langswitch button{font:inherit;font-size:.9rem;padding:.25rem .7rem;border:1px solid var(--accent);
background:#fff;color:var(--accent);border-radius:4px;cursor:pointer}
.langswitch button[aria-pressed="true"]{background:var(--accent);color:#fff}
.langswitch button:focus-visible,a:focus-visible,summary:focus-visible,
.scroll:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.skip{position:absolute;left:-999px;top:0}
.skip:focus{left:.5rem;background:#fff;padding:.3rem .6rem;z-index:2}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);
white-space:nowrap}
nav ol{columns:2;margin:.3rem 0;padding-left:1.4rem}
figure{margin:1.2rem 0}
figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:.88rem;color:var(--muted);margin-top:.3rem}
.scroll{overflow-x:auto;margin:.8rem 0}
table{border-collapse:collapse;font-size:.84rem;width:100%}
caption{text-align:left;font-weight:600;padding:.3rem 0;caption-side:top}
th,td{border-bottom:1px solid var(--line);padding:.28rem .45rem;text-align:left;
vertical-align:top}
thead th{border-bottom:2px solid #999;vertical-align:bottom;background:var(--soft)}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.supp{color:var(--muted)}
tr.group th{background:#eef2f7;font-weight:600}
tr.flag{background:#fff4e5}
table.wide tbody th[scope="row"]{min-width:14rem}
.ci{color:var(--muted);font-size:.9em}
sup a.fn{text-decoration:none;padding:0 .1em}
ul.notes{list-style:none;padding-left:0;margin:.2rem 0 1rem}
dl.defs dt{font-weight:600;margin-top:.8rem}
dl.defs dd{margin:0 0 0 1rem}
dl.tech dd{margin:0 0 .4rem 1rem}
details{margin:.6rem 0}
summary{cursor:pointer;color:var(--accent)}
html[data-lang="en"] .i-lv,html[data-lang="lv"] .i-en{display:none!important}
html:not([data-lang]) .langswitch{display:none}
html:not([data-lang]) span.i-lv::before{content:" / "}
html:not([data-lang]) p.i-lv,html:not([data-lang]) li.i-lv{color:var(--muted)}
@media print{.langswitch,nav,.skip{display:none}details{display:block}
h2{break-after:avoid}figure,tr{break-inside:avoid}}
""".strip()

#: runs before the body is drawn: the page opens in English (without script: both languages)
HEAD_JS = "document.documentElement.setAttribute('data-lang','en');"

#: the language switch: shows one language, updates lang, title, alt texts and the buttons
BODY_JS = """
(function(){
var root=document.documentElement;
function setLang(l){
root.setAttribute('data-lang',l);root.setAttribute('lang',l);
document.title=root.getAttribute('data-title-'+l)||document.title;
var b=document.querySelectorAll('[data-set-lang]');
for(var i=0;i<b.length;i++){b[i].setAttribute('aria-pressed',
String(b[i].getAttribute('data-set-lang')===l));}
var im=document.querySelectorAll('img[data-alt-'+l+']');
for(var j=0;j<im.length;j++){im[j].setAttribute('alt',im[j].getAttribute('data-alt-'+l));}
}
var b=document.querySelectorAll('[data-set-lang]');
for(var i=0;i<b.length;i++){b[i].addEventListener('click',function(){
setLang(this.getAttribute('data-set-lang'));});}
setLang(root.getAttribute('data-lang')||'en');
})();
""".strip()


# --------------------------------------------------------------------------- entry points


def render_publication(pub: Publication) -> str:
    """The report of an already loaded publication (HTML text)."""
    return _Report(pub).html()


def render(publication: Any) -> str:
    """Load the publication folder ``publication`` and render its report."""
    return render_publication(load_publication(publication))
