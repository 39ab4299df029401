"""LIST lines, as servers write them: Unix `ls -l` (with a year, or with a time of day for
recent files, or in `--time-style=long-iso` / `full-iso` form), and Windows/IIS `dir`
(`11-29-26  04:01AM  3000000 name`, `<DIR>`).

aioftp's own LIST parser does not read IIS's two-digit years and dates a year-less line
into the future (`Dec 31 23:59` seen in November is taken as this December); here a line
without a year is the most recent such date not more than two days ahead of now (time zones).
A long-iso time (`2026-11-29 12:00`) has no zone and is read as UTC, like every other `ls -l`
time; a full-iso time (`2026-11-29 12:00:00.123456789 +0530`) has its zone applied and is
kept to the second, as MDTM and MLSD give it.

A line in none of these forms is not dropped: `read_list_line` makes it an "unreadable"
entry named by the whole line, so that the caller reports it instead of losing a file.
"""

from __future__ import annotations

import calendar
import re
import time

from ._transport import EntryKind, RemoteEntry

__all__ = ["parse_list_line", "read_list_line"]

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_UNIX = re.compile(
    r"(?P<type>[-dlbcps])[-rwxsStTl]{9}[.+@]?\s+\d+\s+"  # type, mode, links
    r"\S+\s+(?:\S+\s+)?"  # owner, and group when there is one
    r"(?P<size>\d+)\s+"
    r"(?:(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+(?:(?P<year>\d{4})|(?P<hh>\d{1,2}):(?P<mm>\d{2}))"
    r"|(?P<iso>\d{4}-\d{2}-\d{2} \d{2}:\d{2})"  # long-iso; full-iso adds seconds and a zone
    r"(?::(?P<ss>\d{2})(?:\.\d{1,9})? (?P<zone>[+-]\d{4}))?)"
    r" (?P<name>.+)")
_WINDOWS = re.compile(
    r"(?P<month>\d{2})[-/](?P<day>\d{2})[-/](?P<year>\d{2}|\d{4})\s+"
    r"(?P<hh>\d{1,2}):(?P<mm>\d{2})\s*(?P<ampm>[AaPp][Mm])?\s+"
    r"(?P<size><DIR>|[\d,.]+)\s+(?P<name>.+)")
_AHEAD = 2 * 86400  # a year-less date up to this far in the future is this year's


def parse_list_line(line: bytes, *, now: float | None = None) -> RemoteEntry | None:
    """One LIST line as an entry; None for lines that describe nothing (`total 42`, `.`).
    ValueError when the line is in no format we know."""
    text = line.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
    if not text.strip() or re.fullmatch(r"total \S+", text.strip()):
        return None
    match = _UNIX.fullmatch(text)
    if match is not None:
        entry = _unix(match, time.time() if now is None else now)
    elif (match := _WINDOWS.fullmatch(text.lstrip())) is not None:  # a name may end in " "
        entry = _windows(match)
    else:
        raise ValueError(f"not a LIST line: {text[:200]!r}")
    return None if entry.name in (".", "..") else entry


def read_list_line(line: bytes, *, now: float | None = None) -> RemoteEntry | None:
    """`parse_list_line`, except that a line in no format we know is an entry of kind
    "unreadable" named by the whole line (bytes that are not UTF-8 shown as \\xNN): such a
    line may name a file, and must be reported, never dropped."""
    try:
        return parse_list_line(line, now=now)
    except ValueError:
        text = line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
        return RemoteEntry(text, None, None, "unreadable")


def _unix(match: re.Match[str], now: float) -> RemoteEntry:
    kinds: dict[str, EntryKind] = {"-": "file", "d": "dir", "l": "link"}
    kind = kinds.get(match["type"], "other")
    name = match["name"]
    if kind == "link":
        name = name.split(" -> ", 1)[0]
    if match["iso"] is not None:
        mtime, resolution = _iso(match["iso"], match["ss"], match["zone"])
        return RemoteEntry(name, int(match["size"]), mtime, kind, resolution)
    month = _MONTHS.get(match["month"].lower())
    if month is None:
        raise ValueError(f"unknown month {match['month']!r}")
    day = int(match["day"])
    if match["year"] is not None:
        mtime, resolution = _utc(int(match["year"]), month, day, 0, 0), 86400.0
    else:
        mtime, resolution = _recent(month, day, int(match["hh"]), int(match["mm"]), now), 60.0
    return RemoteEntry(name, int(match["size"]), mtime, kind, resolution)


def _iso(when: str, seconds: str | None, zone: str | None) -> tuple[float, float]:
    """A long-iso time (UTC, to the minute) or a full-iso one (its zone applied, to the
    second: the fraction is dropped, as MDTM drops it), with its resolution."""
    year, month, day, hour, minute = (int(part) for part in re.split("[- :]", when))
    if seconds is None or zone is None:
        return _utc(year, month, day, hour, minute), 60.0
    zone_hours, zone_minutes = int(zone[1:3]), int(zone[3:5])
    if zone_hours > 23 or zone_minutes > 59:
        raise ValueError(f"no such zone {zone}")
    east = (zone_hours * 3600 + zone_minutes * 60) * (1 if zone[0] == "+" else -1)
    return _utc(year, month, day, hour, minute, int(seconds)) - east, 1.0


def _recent(month: int, day: int, hour: int, minute: int, now: float) -> float:
    """The latest such time not more than _AHEAD after now (this year's, or last year's)."""
    year = time.gmtime(now).tm_year
    for candidate in (year, year - 1):
        try:
            mtime = _utc(candidate, month, day, hour, minute)
        except ValueError:  # Feb 29 of a common year
            continue
        if mtime <= now + _AHEAD:
            return mtime
    raise ValueError(f"no recent {month}-{day} {hour}:{minute:02d}")


def _windows(match: re.Match[str]) -> RemoteEntry:
    year = int(match["year"])
    if year < 100:
        year += 1900 if year >= 70 else 2000
    hour = int(match["hh"])
    ampm = (match["ampm"] or "").upper()
    if ampm and not 1 <= hour <= 12:
        raise ValueError(f"bad hour {hour} {ampm}")
    if ampm:
        hour = hour % 12 + (12 if ampm == "PM" else 0)
    mtime = _utc(year, int(match["month"]), int(match["day"]), hour, int(match["mm"]))
    if match["size"] == "<DIR>":
        return RemoteEntry(match["name"], None, mtime, "dir", 60.0)
    size = match["size"].replace(",", "").replace(".", "")
    return RemoteEntry(match["name"], int(size), mtime, "file", 60.0)


def _utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]
            and hour < 24 and minute < 60 and second < 60):
        raise ValueError(f"no such time {year}-{month}-{day} {hour}:{minute}:{second}")
    return float(calendar.timegm((year, month, day, hour, minute, second)))
