"""A self-contained HTML report of audit records for a reviewer.

One file, no external script, style sheet, font or image; a Content-Security-Policy that forbids
them anyway. Every value from a record is HTML-escaped: SQL text, principal ids and reasons are
attacker-controlled.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from pgwarden import __version__
from pgwarden.proxy.audit.query import record_time, sql_text
from pgwarden.proxy.audit.verify import LoadedRecord, VerifyResult

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  margin:24px 32px;color:#1d2733;background:#fff}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d6dde5;padding-bottom:4px}
.meta{color:#5a6878}.ok{color:#17693a;font-weight:600}.bad{color:#b3261e;font-weight:600}
.cards{display:flex;gap:12px;margin:16px 0}
.card{border:1px solid #d6dde5;border-radius:6px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{border:1px solid #d6dde5;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f1f4f7}td.num{text-align:right}
code{font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-word}
.allow{color:#17693a;font-weight:600}.deny{color:#b3261e;font-weight:600}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
"""
_ALLOW_COLOR = "#3a9a5b"
_DENY_COLOR = "#d0453a"


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _buckets(times: Sequence[datetime]) -> tuple[datetime, timedelta, int]:
    start, end = min(times), max(times)
    span = max(end - start, timedelta(seconds=1))
    steps = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1),
             timedelta(hours=6), timedelta(days=1), timedelta(days=7))
    width = next((s for s in steps if span / s <= 48), steps[-1])
    origin = datetime.fromtimestamp(start.timestamp() // width.total_seconds() * width.total_seconds(), UTC)
    count = int((end - origin) / width) + 1
    return origin, width, count


def _duration(width: timedelta) -> str:
    minutes = int(width.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"


def _chart(records: Sequence[dict[str, Any]]) -> str:
    """Inline SVG: allowed and denied decisions per time bucket, stacked."""
    stamped = [(t, r.get("decision")) for r in records if (t := record_time(r)) is not None]
    if not stamped:
        return "<p class='meta'>No timestamps to chart.</p>"
    origin, width, count = _buckets([t for t, _ in stamped])
    allow = [0] * count
    deny = [0] * count
    for t, decision in stamped:
        i = min(int((t - origin) / width), count - 1)
        (allow if decision == "allow" else deny)[i] += 1
    peak = max(a + d for a, d in zip(allow, deny, strict=True)) or 1
    w, h, left, bottom = 960, 220, 40, 30
    bar = min((w - left - 10) / count, 48.0)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h + bottom}' role='img' "
             f"aria-label='Decisions over time'>",
             f"<line x1='{left}' y1='{h}' x2='{w - 10}' y2='{h}' stroke='#8796a5'/>",
             f"<text x='{left - 6}' y='14' font-size='11' text-anchor='end'>{peak}</text>",
             f"<text x='{left - 6}' y='{h}' font-size='11' text-anchor='end'>0</text>"]
    for i in range(count):
        x = left + i * bar
        a_h = allow[i] / peak * (h - 10)
        d_h = deny[i] / peak * (h - 10)
        label = (origin + i * width).strftime("%Y-%m-%d %H:%M")
        title = f"<title>{_e(label)}: {allow[i]} allowed, {deny[i]} denied</title>"
        if allow[i]:
            parts.append(f"<rect x='{x + 1:.1f}' y='{h - a_h:.1f}' width='{max(bar - 2, 1):.1f}' "
                         f"height='{a_h:.1f}' fill='{_ALLOW_COLOR}'>{title}</rect>")
        if deny[i]:
            parts.append(f"<rect x='{x + 1:.1f}' y='{h - a_h - d_h:.1f}' width='{max(bar - 2, 1):.1f}' "
                         f"height='{d_h:.1f}' fill='{_DENY_COLOR}'>{title}</rect>")
    for i in sorted({0, count // 2, count - 1}):
        label = (origin + i * width).strftime("%m-%d %H:%M")
        parts.append(f"<text x='{left + i * bar + bar / 2:.1f}' y='{h + 18}' font-size='11' "
                     f"text-anchor='middle'>{_e(label)}</text>")
    parts.append("</svg>")
    legend = (f"<div class='legend'>one bar = {_e(_duration(width))}"
              f"<span style='background:{_ALLOW_COLOR}'></span>allowed"
              f"<span style='background:{_DENY_COLOR}'></span>denied</div>")
    return "".join(parts) + legend


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, html_cells: bool = False) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    if not rows:
        return f"<table><tr>{head}</tr><tr><td colspan='{len(headers)}' class='meta'>none</td></tr></table>"
    body = "".join("<tr>" + "".join(f"<td>{c if html_cells else _e(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_report(
    loaded: Sequence[LoadedRecord],
    *,
    verification: VerifyResult,
    files: Sequence[str],
    title: str = "pgwarden audit report",
    max_rows: int = 5000,
) -> str:
    """The report as one HTML document (string)."""
    records = [item.record for item in loaded]
    allowed = sum(1 for r in records if r.get("decision") == "allow")
    denied = len(records) - allowed
    principals = sorted({str(r.get("principal")) for r in records})

    if verification.ok:
        chains = ", ".join(f"{c.instance_id}: seq {c.first_seq}–{c.last_seq}" for c in verification.chains)
        status = f"<p class='ok'>Hash chain verified ({_e(chains) or 'no records'}).</p>"
    else:
        status = f"<p class='bad'>Hash chain BROKEN: {_e(verification.problem)}</p>"

    reasons = Counter((r.get("reason_code") or "—", ", ".join(r.get("rules") or []) or "—")
                      for r in records if r.get("decision") != "allow")
    reason_rows = [(code, rules, str(n)) for (code, rules), n in reasons.most_common(20)]

    touched: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        for relation in r.get("relations") or []:
            touched[str(r.get("principal"))][str(relation)] += 1
    touched_rows = [(p, ", ".join(f"{t} ({n})" for t, n in sorted(c.items())))
                    for p, c in sorted(touched.items())]

    shown = records[-max_rows:]
    decision_rows = []
    for r in reversed(shown):
        decision = str(r.get("decision"))
        decision_rows.append((
            _e(r.get("seq")), _e(str(r.get("ts") or "")[:19].replace("T", " ")), _e(r.get("principal")),
            _e(r.get("tool") or r.get("method")),
            f"<span class='{'allow' if decision == 'allow' else 'deny'}'>{_e(decision)}</span>",
            _e(", ".join(r.get("rules") or [])), _e(r.get("reason_code") or ""),
            f"<code>{_e(sql_text(r.get('sql')))}</code>", f"<code>{_e(sql_text(r.get('sql_sent')))}</code>",
            _e("" if r.get("rows") is None else r.get("rows"))
            + (" (truncated)" if r.get("truncated") else ""),
        ))
    more = (f"<p class='meta'>Showing the newest {len(shown)} of {len(records)} decisions.</p>"
            if len(shown) < len(records) else "")
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{_CSP}\">"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f"<p class='meta'>Generated {generated} by pgwarden {_e(__version__)} from "
        f"{_e(', '.join(files))}. SQL is shown as stored: literals replaced by ?.</p>"
        f"{status}"
        "<div class='cards'>"
        f"<div class='card'>decisions<b id='total'>{len(records)}</b></div>"
        f"<div class='card'>allowed<b class='allow'>{allowed}</b></div>"
        f"<div class='card'>denied<b class='deny'>{denied}</b></div>"
        f"<div class='card'>principals<b>{len(principals)}</b></div></div>"
        f"<h2 id='over-time'>Decisions over time</h2>{_chart(records)}"
        f"<h2 id='denied-reasons'>Top denied reasons</h2>"
        f"{_table(('reason code', 'rules', 'count'), reason_rows)}"
        f"<h2 id='tables-per-principal'>Tables touched per principal</h2>"
        f"{_table(('principal', 'tables (decisions)'), touched_rows)}"
        f"<h2 id='decisions'>Decisions</h2>{more}"
        f"{_table(('seq', 'time (UTC)', 'principal', 'tool', 'decision', 'rules', 'reason', 'SQL received', 'SQL sent', 'rows'), decision_rows, html_cells=True)}"  # noqa: E501
        "</body></html>"
    )
