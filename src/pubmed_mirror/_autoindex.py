"""Directory listings of web servers: Apache's mod_autoindex (plain, fancy, HTML table) and
nginx's autoindex, which is what NCBI serves under https://ftp.ncbi.nlm.nih.gov/pubmed/.

Each entry is an `<a href>` whose target is a name in this directory, followed (in the same
line or table row) by its modification time and size. Sizes are exact when the server gives
bytes (nginx by default) and approximate when it rounds them (Apache: `1.4M`, NCBI: `24M`):
those are returned as `Listed.size_hint` with `size` None, for the caller to ask (HEAD).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

__all__ = ["Listed", "parse_autoindex"]

_TIME = re.compile(
    r"(?P<iso>\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})?)"
    r"|(?P<dmy>\d{1,2}-[A-Z][a-z]{2}-\d{4} \d{2}:\d{2}(?::\d{2})?)")
_SIZE = re.compile(r"(?<![\w.:-])(?P<n>\d+(?:\.\d+)?)(?P<unit>[KMGTP]?)(?![\w.:-])")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


@dataclass(frozen=True, slots=True)
class Listed:
    """One entry of a listing. `mtime` is POSIX seconds as the page shows it (the server's
    clock, usually UTC; minutes unless seconds are shown); `size` exact bytes or None."""

    name: str
    is_dir: bool
    mtime: float | None
    mtime_resolution: float
    size: int | None
    size_hint: int | None  # the rounded size the page shows, when it rounds


def parse_autoindex(html: str) -> list[Listed]:
    """The entries of an autoindex page (no parent, no sort links, no links elsewhere)."""
    parser = _Anchors()
    parser.feed(html)
    parser.close()
    entries: dict[str, Listed] = {}
    for href, text in parser.anchors:
        name = _name(href)
        if name is None or name in entries:
            continue
        is_dir = href.split("?", 1)[0].endswith("/")
        mtime, resolution = _mtime(text)
        size, hint = (None, None) if is_dir else _size(_TIME.sub(" ", text))
        entries[name] = Listed(name, is_dir, mtime, resolution, size, hint)
    return list(entries.values())


class _Anchors(HTMLParser):
    """Each `<a href>` with the text that follows it up to the next anchor or line/row end."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[str, str]] = []
        self._href: str | None = None
        self._in_anchor = False
        self._after: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._flush()
            href = dict(attrs).get("href")
            self._href = href
            self._in_anchor = True
        elif tag == "tr":
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False
        elif tag in ("tr", "li", "table", "pre"):
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._href is None or self._in_anchor:
            return
        line, newline, _ = data.partition("\n")
        self._after.append(line)
        if newline:
            self._flush()

    def _flush(self) -> None:
        if self._href is not None:
            self.anchors.append((self._href, " ".join(self._after)))
        self._href = None
        self._after = []

    def close(self) -> None:
        super().close()
        self._flush()


def _name(href: str) -> str | None:
    """The entry an href names, if it is one of this directory's."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        return None  # another site, or a sort link (?C=N;O=D)
    path = parts.path
    if path.startswith("./"):
        path = path[2:]
    path = path.removesuffix("/")
    if not path or path.startswith("/") or "/" in path:
        return None  # the parent, an absolute link, or something deeper
    name = unquote(path)
    if name in (".", "..") or "/" in name:
        return None
    return name


def _mtime(text: str) -> tuple[float | None, float]:
    match = _TIME.search(text)
    if match is None:
        return None, 1.0
    value = match.group(0)
    seconds = value.count(":") == 2
    fmt = ("%Y-%m-%d %H:%M" if match.group("iso") else "%d-%b-%Y %H:%M") + (
        ":%S" if seconds else "")
    try:
        stamp = datetime.strptime(value, fmt)
    except ValueError:
        return None, 1.0
    return float(calendar.timegm(stamp.timetuple())), 1.0 if seconds else 60.0


def _size(text: str) -> tuple[int | None, int | None]:
    """(exact bytes, None) or (None, rounded bytes) or (None, None)."""
    match = _SIZE.search(text)
    if match is None:
        return None, None
    number, unit = match.group("n"), match.group("unit")
    if not unit and number.isdigit():
        return int(number), None
    return None, int(float(number) * _UNITS[unit])
