"""When a query asks about: relative English date phrases as spans of time before ``now``.

"yesterday", "today", "this/last week", "this/last month", "this/last year", "last May",
"3 days ago", "two weeks ago" become (start, end) spans in UTC epoch seconds, measured from the
time of the search. The reranker's date feature uses them next to absolute months and years
("in May 2023"), so "what did I say about the invoice last week?" prefers last week's turn over
an older one that says the same.
"""

from __future__ import annotations

import calendar
import re
import time

DAY = 86400.0
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
_MONTH_NAMES = [m.lower() for m in calendar.month_name if m]
_AGO = re.compile(r"\b(\d{1,2}|a|an|one|two|three|four|five|six) (day|week|month|year)s? ago\b")
_LAST_MONTH_NAME = re.compile(r"\blast (" + "|".join(_MONTH_NAMES) + r")\b")
_UNIT = {"day": DAY, "week": 7 * DAY, "month": 30 * DAY, "year": 365 * DAY}

Span = tuple[float, float]


def _day_start(t: float) -> float:
    return t - t % DAY


def _month_start(year: int, month: int) -> float:
    while month < 1:
        month, year = month + 12, year - 1
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


def spans(query: str, now: float | None = None) -> list[Span]:
    """The spans of time the query's relative date phrases point at (``[]`` for none)."""
    q = query.lower()
    if not any(w in q for w in ("day", "week", "month", "year", "ago", "last ")):
        return []
    now = time.time() if now is None else now
    g = time.gmtime(now)
    today = _day_start(now)
    week = today - g.tm_wday * DAY
    out: list[Span] = []
    if "today" in q:
        out.append((today, now))
    if "yesterday" in q:
        out.append((today - DAY, today))
    if "this week" in q:
        out.append((week, now))
    if "last week" in q:
        out.append((week - 7 * DAY, week))
    if "this month" in q:
        out.append((_month_start(g.tm_year, g.tm_mon), now))
    if "last month" in q:
        out.append((_month_start(g.tm_year, g.tm_mon - 1), _month_start(g.tm_year, g.tm_mon)))
    if "this year" in q:
        out.append((_month_start(g.tm_year, 1), now))
    if "last year" in q:
        out.append((_month_start(g.tm_year - 1, 1), _month_start(g.tm_year, 1)))
    for m in _LAST_MONTH_NAME.finditer(q):
        month = _MONTH_NAMES.index(m.group(1)) + 1
        year = g.tm_year if month < g.tm_mon else g.tm_year - 1
        out.append((_month_start(year, month), _month_start(year, month + 1)))
    for m in _AGO.finditer(q):
        n = int(m.group(1)) if m.group(1).isdigit() else _NUMBERS[m.group(1)]
        unit = _UNIT[m.group(2)]
        centre = now - n * unit
        out.append((centre - unit / 2, centre + unit / 2 + (DAY if unit == DAY else 0.0)))
    return out


def within(at: float, found: list[Span]) -> bool:
    return any(start <= at < end for start, end in found)
