"""What ``status`` shows of the lake's facts: rows per day beside the calendar, and one table's history as a chart.

The ledger says whether a day landed; the facts (:mod:`omborigrid_export.lake_facts`) say what it holds. A day that
landed with 0 rows, or far from its usual volume, or with a schema unlike the day before, is still landed, but a
person reading the calendar must see it at a glance, so such days get their own marks (and a line below the grid
saying what each is), and each month's line is followed by the rows of its days as a bar of block characters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from omborigrid_export.lake_facts import LandingFact

#: Marks of landed days that say more than "landed" (the weakest first: a day with several shows the last).
EMPTY, ANOMALOUS, SCHEMA_CHANGED = "0", "!", "%"
LEGEND = "0 landed empty  ! anomalous volume  % schema changed"
MARKS = {"empty": EMPTY, "anomalous": ANOMALOUS, "schemaChanged": SCHEMA_CHANGED}
#: Rows as a block per day: ``_`` is 0 rows, then eight heights up to the month's largest day.
BARS = " ▁▂▃▄▅▆▇█"
#: Width of the history chart's bars.
CHART_WIDTH = 40


def day_mark(facts: Sequence[LandingFact]) -> str | None:
    """The mark of a landed day from its facts (any table), or None when nothing stands out."""
    mark = None
    if facts and all(f.empty for f in facts):
        mark = EMPTY
    if any(f.volume in ("low", "high") for f in facts):
        mark = ANOMALOUS
    if any(f.schema_change is not None for f in facts):
        mark = SCHEMA_CHANGED
    return mark


def day_signal(facts: Sequence[LandingFact]) -> str | None:
    """The mark as the word ``--json`` shows: ``empty``, ``anomalous`` or ``schemaChanged``."""
    return {EMPTY: "empty", ANOMALOUS: "anomalous", SCHEMA_CHANGED: "schemaChanged", None: None}[day_mark(facts)]


def by_day(facts: Iterable[LandingFact]) -> dict[date, list[LandingFact]]:
    grouped: dict[date, list[LandingFact]] = {}
    for fact in facts:
        grouped.setdefault(fact.day, []).append(fact)
    return grouped


def day_rows(facts: Sequence[LandingFact]) -> int | None:
    """A day's rows over its tables, or None when some table's rows are unknown (no proof) or nothing landed."""
    rows = [f.rows for f in facts]
    if not rows or any(r is None for r in rows):
        return None
    return sum(r for r in rows if r is not None)


def day_facts_json(facts: Sequence[LandingFact]) -> dict[str, Any]:
    """The fields ``status --json`` adds to a day."""
    return {
        "rows": day_rows(facts),
        "signal": day_signal(facts),
        "tables": {f.table: f.to_dict() for f in sorted(facts, key=lambda f: f.table)},
    }


def rows_bar(rows_by_day: dict[int, int | None], peak: int) -> str:
    """31 cells, one per day of the month: the day's rows as a block (blank: unknown or nothing landed)."""
    cells = [" "] * 31
    for day_of_month, rows in rows_by_day.items():
        if rows is not None:
            cells[day_of_month - 1] = "_" if rows == 0 else BARS[max(1, round(rows / max(peak, rows) * 8))]
    return "".join(cells)


def signal_lines(days: Sequence[dict[str, Any]]) -> list[str]:
    """What each marked day of ``status``'s report is, one line each (the tables that show it)."""
    lines = []
    for row in days:
        tables = row.get("tables") or {}
        if row.get("signal") == "empty":
            lines.append(f"  empty {row['date']}: landed with 0 rows")
        for table, fact in sorted(tables.items()):
            if fact["schemaChange"]:
                lines.append(f"  schema changed {row['date']}: {table} ({fact['schemaChange']})")
            if fact["volume"] in ("low", "high"):
                rows = f"{fact['rows']:,} row{'' if fact['rows'] == 1 else 's'}"
                lines.append(f"  anomalous {row['date']}: {table} {rows} ({fact['volume']})")
    return lines


def history_chart(tenant_id: str, table: str, facts: Sequence[LandingFact]) -> str:
    """One line per landed day of ``table``: date, rows, a bar scaled to the largest day, and its mark."""
    days = sorted((f for f in facts if f.table == table), key=lambda f: f.day)
    lines = [f"{tenant_id} {table}: rows per landed day"]
    if not days:
        return "\n".join([*lines, "  (no landed day with facts in this range)", ""])
    peak = max((f.rows or 0) for f in days)
    for fact in days:
        rows = "?" if fact.rows is None else f"{fact.rows:,}"
        length = 0 if not fact.rows or peak == 0 else max(1, round(fact.rows / peak * CHART_WIDTH))
        note = {EMPTY: "  empty", ANOMALOUS: "  anomalous", SCHEMA_CHANGED: "  schema changed"}.get(
            day_mark([fact]) or "", ""
        )
        lines.append(f"  {fact.day} {rows:>12} {'█' * length}{note}")
    return "\n".join([*lines, ""])
