"""LIST lines from Unix, vsftpd/proftpd/pure-ftpd and Windows/IIS servers."""

from __future__ import annotations

import calendar
import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubmed_mirror._listing import parse_list_line, read_list_line
from pubmed_mirror._transport import RemoteEntry

NOW = calendar.timegm((2026, 11, 29, 4, 0, 0))  # a Sunday in November, UTC


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, second)))


@pytest.mark.parametrize(("line", "entry"), [
    (b"-rw-r--r--    1 0        0         3000000 Nov 29 04:01 a.xml.gz",
     RemoteEntry("a.xml.gz", 3000000, utc(2026, 11, 29, 4, 1, 0))),
    (b"-rw-r--r--    1 ftp      ftp       3000000 Nov 29  2024 a b  c.xml.gz",
     RemoteEntry("a b  c.xml.gz", 3000000, utc(2024, 11, 29, 0, 0, 0))),
    ("-rw-r--r--   1 owner group  12 Jun  3 12:00 café 文献.xml.gz".encode(),
     RemoteEntry("café 文献.xml.gz", 12, utc(2026, 6, 3, 12, 0, 0))),
    # no year and later in the year than now: last year's (not a date in the future)
    (b"-rw-r--r--   1 owner group  123 Dec 31 23:59 newyear.xml.gz",
     RemoteEntry("newyear.xml.gz", 123, utc(2025, 12, 31, 23, 59, 0))),
    # up to two days ahead is this year's (the server's clock or time zone)
    (b"-rw-r--r--   1 owner group  1 Nov 30 10:00 tomorrow",
     RemoteEntry("tomorrow", 1, utc(2026, 11, 30, 10, 0, 0))),
    (b"-rw-r--r--   1 1000  42 Nov 29 04:01 no-group.xml.gz",  # owner only (ls -G)
     RemoteEntry("no-group.xml.gz", 42, utc(2026, 11, 29, 4, 1, 0))),
    (b"lrwxrwxrwx    1 0   0    11 Nov 29 04:01 link.xml.gz -> /etc/passwd",
     RemoteEntry("link.xml.gz", 11, utc(2026, 11, 29, 4, 1, 0), "link")),
    (b"drwxr-xr-x    2 0   0  4096 Jan  2  2026 sub dir",
     RemoteEntry("sub dir", 4096, utc(2026, 1, 2, 0, 0, 0), "dir")),
    (b"-rw-r--r--+   1 0   0    5 Nov 29 04:01 acl.txt\r\n",
     RemoteEntry("acl.txt", 5, utc(2026, 11, 29, 4, 1, 0))),
    # ls --time-style=long-iso (read as UTC) and full-iso (its zone applied)
    (b"-rw-r--r-- 1 ftp ftp 1234 2026-11-29 12:00 long iso.xml.gz",
     RemoteEntry("long iso.xml.gz", 1234, utc(2026, 11, 29, 12, 0, 0))),
    (b"drwxr-xr-x 2 0 0 4096 2024-02-29 23:59 a dir",
     RemoteEntry("a dir", 4096, utc(2024, 2, 29, 23, 59, 0), "dir")),
    (b"-rw-r--r-- 1 ftp ftp 1234 2026-11-29 12:00:07.999999999 +0000 full.xml.gz",
     RemoteEntry("full.xml.gz", 1234, utc(2026, 11, 29, 12, 0, 7))),
    (b"-rw-r--r-- 1 0 0 5 2026-11-29 05:30:00.000000000 +0530 2026-01-01 00:00 x",
     RemoteEntry("2026-01-01 00:00 x", 5, utc(2026, 11, 29, 0, 0, 0))),
    (b"-rw-r--r-- 1 0 0 5 2026-11-28 16:00:59.5 -0800 west",
     RemoteEntry("west", 5, utc(2026, 11, 29, 0, 0, 59))),
    (b"lrwxrwxrwx 1 0 0 11 2026-11-29 12:00 link.xml.gz -> /etc/passwd",
     RemoteEntry("link.xml.gz", 11, utc(2026, 11, 29, 12, 0, 0), "link")),
    # Windows / IIS
    (b"11-29-26  04:01AM              3000000 iis.xml.gz",
     RemoteEntry("iis.xml.gz", 3000000, utc(2026, 11, 29, 4, 1, 0))),
    (b"12-31-99  11:59PM       <DIR>          old dir",
     RemoteEntry("old dir", None, utc(1999, 12, 31, 23, 59, 0), "dir")),
    (b"11/29/2026  12:05 AM         3,000,000 win two.xml.gz",
     RemoteEntry("win two.xml.gz", 3000000, utc(2026, 11, 29, 0, 5, 0))),
    (b"01-02-2026  13:45              7 twentyfour.txt",
     RemoteEntry("twentyfour.txt", 7, utc(2026, 1, 2, 13, 45, 0))),
])
def test_known_formats(line: bytes, entry: RemoteEntry) -> None:
    parsed = parse_list_line(line, now=NOW)
    assert parsed is not None and replace(parsed, mtime_resolution=1.0) == entry


@pytest.mark.parametrize(("line", "resolution"), [
    (b"-rw-r--r-- 1 0 0 5 Nov 29  2024 old", 86400.0),  # only the day
    (b"-rw-r--r-- 1 0 0 5 Nov 29 04:01 recent", 60.0),
    (b"11-29-26  04:01AM   5 iis", 60.0),
    (b"-rw-r--r-- 1 0 0 5 2026-11-29 04:01 long-iso", 60.0),
    (b"-rw-r--r-- 1 0 0 5 2026-11-29 04:01:02.000000000 +0100 full-iso", 1.0),
])
def test_listed_times_say_how_coarse_they_are(line: bytes, resolution: float) -> None:
    """A retry compares MDTM with the listed time at the listing's own resolution."""
    entry = parse_list_line(line, now=NOW)
    assert entry is not None and entry.mtime_resolution == resolution


@pytest.mark.parametrize("line", [b"total 42", b"total 1.2M", b"", b"   ",
                                  b"drwxr-xr-x 2 0 0 4096 Nov 29 04:01 .",
                                  b"drwxr-xr-x 2 0 0 4096 Nov 29 04:01 .."])
def test_lines_that_describe_nothing(line: bytes) -> None:
    assert parse_list_line(line, now=NOW) is None


@pytest.mark.parametrize("line", [
    b"garbage", b"-rw-r--r-- 1 0 0 12 Foo 29 04:01 x", b"-rw-r--r-- 1 0 0 12 Feb 30 2026 x",
    b"13-29-26  04:01AM   1 x", b"11-29-26  13:01PM   1 x", b"-rw-r--r-- 1 0 0 -5 Nov 29 04:01 x",
    b"-rw-r--r-- 1 0 0 5 2026-13-01 12:00 x", b"-rw-r--r-- 1 0 0 5 2026-11-29 24:00 x",
    b"-rw-r--r-- 1 0 0 5 2026-11-29 12:00:60.0 +0000 x",
    b"-rw-r--r-- 1 0 0 5 2026-11-29 12:00:00.0 +2400 x",
    b"-rw-r--r-- 1 0 0 5 29.11.2026 12:00 x", b"-rw-r--r-- 1 0 0 5 2026-11-29  x",
    b"total of 3 files: x",
])
def test_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse_list_line(line, now=NOW)


names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")),
                min_size=1, max_size=40).filter(
    lambda n: n.strip() == n and n not in (".", "..") and " -> " not in n)
moments = st.integers(calendar.timegm((1990, 1, 1, 0, 0, 0)) // 60, NOW // 60).map(
    lambda m: m * 60.0)


@given(name=names, size=st.integers(0, 10**13), mtime=moments)
def test_unix_lines_round_trip(name: str, size: int, mtime: float) -> None:
    """What `ls -l` writes (the time of day within the last six months, else the year)
    reads back as the same name, size and time."""
    t = time.gmtime(mtime)
    recent = NOW - mtime < 182 * 86400
    when = f"{t.tm_hour:02d}:{t.tm_min:02d}" if recent else f" {t.tm_year}"
    month = time.strftime("%b", t)
    line = f"-rw-r--r--   1 ftp  ftp  {size:>8} {month} {t.tm_mday:2d} {when} {name}"
    expected = mtime if recent else utc(t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)
    assert parse_list_line(line.encode(), now=NOW) == RemoteEntry(
        name, size, expected, "file", 60.0 if recent else 86400.0)


zones = st.integers(-14 * 60, 14 * 60)  # minutes east of UTC


@given(name=names, size=st.integers(0, 10**13), mtime=moments, zone=zones,
       nanoseconds=st.integers(0, 10**9 - 1))
def test_full_iso_lines_round_trip(name: str, size: int, mtime: float, zone: int,
                                   nanoseconds: int) -> None:
    """What `ls -l --time-style=full-iso` writes in any zone reads back as the same name,
    size and UTC time, to the second."""
    t = time.gmtime(mtime + zone * 60)
    sign, east = "+-"[zone < 0], abs(zone)
    line = (f"-rw-r--r-- 1 ftp ftp {size} {time.strftime('%Y-%m-%d %H:%M:%S', t)}"
            f".{nanoseconds:09d} {sign}{east // 60:02d}{east % 60:02d} {name}")
    assert parse_list_line(line.encode(), now=NOW) == RemoteEntry(name, size, mtime, "file", 1)


@given(name=names, size=st.integers(0, 10**13), mtime=moments)
def test_long_iso_lines_round_trip(name: str, size: int, mtime: float) -> None:
    line = f"-rw-r--r-- 1 ftp ftp {size} {time.strftime('%Y-%m-%d %H:%M', time.gmtime(mtime))}"
    assert parse_list_line(f"{line} {name}".encode(), now=NOW) == RemoteEntry(
        name, size, mtime, "file", 60)


@given(st.binary(max_size=200))
def test_every_line_is_read_or_reported(line: bytes) -> None:
    """`read_list_line` never drops a line that describes something: whatever it holds is an
    entry (of kind "unreadable", named by the line, when in no format we know) or nothing."""
    try:
        parsed = parse_list_line(line, now=NOW)
    except ValueError:
        entry = read_list_line(line, now=NOW)
        assert entry == RemoteEntry(line.decode("utf-8", "backslashreplace").rstrip("\r\n"),
                                    None, None, "unreadable")
        return
    assert read_list_line(line, now=NOW) == parsed


@given(name=names, size=st.integers(0, 10**13), mtime=moments, commas=st.booleans())
def test_iis_lines_round_trip(name: str, size: int, mtime: float, commas: bool) -> None:
    t = time.gmtime(mtime)
    hour12 = t.tm_hour % 12 or 12
    ampm = "AM" if t.tm_hour < 12 else "PM"
    shown = f"{size:,}" if commas else str(size)
    line = (f"{t.tm_mon:02d}-{t.tm_mday:02d}-{t.tm_year:04d}  {hour12:02d}:{t.tm_min:02d}{ampm}"
            f" {shown:>17} {name}")
    assert parse_list_line(line.encode(), now=NOW) == RemoteEntry(name, size, mtime, "file", 60)


@given(st.binary(max_size=200))
def test_any_bytes_give_an_entry_none_or_a_value_error(line: bytes) -> None:
    """A hostile server cannot crash the parser: whatever a line holds, the answer is an
    entry with a name, nothing, or ValueError (logged and skipped by the caller)."""
    try:
        entry = parse_list_line(line, now=NOW)
    except ValueError:
        return
    assert entry is None or (entry.name and entry.name not in (".", ".."))
