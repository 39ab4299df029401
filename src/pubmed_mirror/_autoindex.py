"""Directory listings of web servers: Apache's mod_autoindex (plain, fancy, HTML table) and
nginx's autoindex, which is what NCBI serves under https://ftp.ncbi.nlm.nih.gov/pubmed/;
lighttpd's, mini_httpd's and Python http.server's too.

Each entry is an `<a href>` whose target is a name in this directory, followed (in the same
line or table row) by its modification time and size. Sizes are exact when the server gives
bytes (nginx by default) and approximate when it rounds them (Apache: `1.4M`, NCBI: `24M`):
those entries have `size` None and the bounds the display stands for (`size_shown`), for
the caller to settle (`_sizes`), as are entries shown without a time (the caller cannot
tell a new version of the same size without one). Times are the server's clock as shown,
read as UTC; minutes unless seconds are shown. The page is parsed as it arrives:
a directory of 300,000 entries is never held as a page, a parse and a listing at once.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

from ._transport import RemoteEntry

log = logging.getLogger("pubmed_mirror")

__all__ = ["AutoindexParser"]

_TIME = re.compile(  # 2026-11-29 12:00[:59] (Apache), 29-Nov-2026 12:00[:59] (nginx),
    # 2026-Nov-29 12:00:59 (lighttpd), 29Nov2026 12:00 (mini_httpd)
    r"(?:(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})|(?P<dd>\d{1,2})-(?P<mon>[A-Z][a-z]{2})-"
    r"(?P<yy>\d{4})|(?P<ly>\d{4})-(?P<lmon>[A-Z][a-z]{2})-(?P<ld>\d{2})|"
    r"(?P<md>\d{2})(?P<mmon>[A-Z][a-z]{2})(?P<my>\d{4})) (?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2}))?")
# what a directory listing is titled: Apache, nginx, lighttpd, NCBI ("Index of /path/");
# Python's http.server and twisted ("Directory listing for /path/")
_INDEX_TITLES = ("Index of ", "Directory listing for ")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"), start=1)}
_SIZE = re.compile(r"(?<![\w.:-])(?P<n>\d+(?:\.\d+)?)(?P<unit>[KMGTP]?)(?![\w.:-])")


class AutoindexParser:
    """An index page parsed as it arrives: `feed` its bytes (in `charset`), take the
    entries they completed; each is an `<a href>` with the text that follows it up to the
    next anchor or line/row end (no parent, sort links or links elsewhere). A name linked
    twice is an entry once (the first), unless `dedupe` is off: then the caller keeps the
    first (a set of a million names is ~100 MB).

    `is_index` says whether the page is a directory index at all: Apache's, nginx's,
    lighttpd's and NCBI's are titled "Index of /path", Python's http.server's "Directory
    listing for /path" (in <title> and <h1>); a login or welcome page is not, whatever
    links it holds. `title` is the page's first <title> or <h1>, for errors.
    """

    def __init__(self, charset: str | None = None, *, dedupe: bool = True) -> None:
        try:
            self._decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
        except LookupError:  # a charset Python does not know
            self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._page = _Page(dedupe)

    @property
    def is_index(self) -> bool:
        return self._page.is_index

    @property
    def title(self) -> str | None:
        return self._page.title

    @property
    def marks_directories(self) -> bool:
        """False once the page links `.` or `..` without a `/` (mini_httpd, h2o): such a
        page links its subdirectories without one too, so a name it shows may be either
        (its entries are "file" as parsed; `_httpindex` makes them "unmarked", and the run
        or `ls` settles them, `_unmarked`)."""
        return self._page.marks_directories

    def feed(self, data: bytes) -> list[RemoteEntry]:
        """The entries completed by `data`."""
        self._page.feed(self._decoder.decode(data))
        return self._page.take()

    def close(self) -> list[RemoteEntry]:
        """The entries left at the end of the page."""
        self._page.feed(self._decoder.decode(b"", final=True))
        self._page.close()
        return self._page.take()


class _Page(HTMLParser):
    """The handlers behind `AutoindexParser`: entries as their anchors' lines end."""

    def __init__(self, dedupe: bool = True) -> None:
        super().__init__(convert_charrefs=True)
        self._dedupe = dedupe
        self.is_index = False
        self.title: str | None = None
        self._done: list[RemoteEntry] = []
        self._seen: set[str] = set()
        self._href: str | None = None
        self._in_anchor = False
        self._after: list[str] = []
        self._heading: list[str] | None = None  # the text of a <title> or <h1> being read
        self.marks_directories = True

    def take(self) -> list[RemoteEntry]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        super().close()
        self._flush()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._flush()
            self._href = dict(attrs).get("href")
            self._in_anchor = True
            if self._href in (".", ".."):
                self.marks_directories = False
        elif tag == "tr":
            self._flush()
        elif tag in ("title", "h1"):
            self._heading = []
        self._separate()

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_anchor = False
        elif tag in ("tr", "li", "table", "pre"):
            self._flush()
        elif tag in ("title", "h1") and self._heading is not None:
            heading = " ".join("".join(self._heading).split())
            self.title = self.title or heading
            self.is_index = self.is_index or heading.startswith(_INDEX_TITLES)
            self._heading = None
        self._separate()

    def _separate(self) -> None:
        """A tag separates words (table cells); text split between two feeds does not."""
        if self._href is not None:
            self._after.append(" ")

    def handle_data(self, data: str) -> None:
        if self._heading is not None:
            self._heading.append(data)
        if self._href is None or self._in_anchor:
            return
        line, newline, _ = data.partition("\n")
        self._after.append(line)
        if newline:
            self._flush()

    def _flush(self) -> None:
        href, self._href = self._href, None
        text, self._after = "".join(self._after), []
        if href is None:
            return
        name = _name(href)
        if name is None or name in self._seen:
            return
        if self._dedupe:
            self._seen.add(name)
        is_dir = href.split("?", 1)[0].endswith("/")
        mtime, resolution = _mtime(text)
        size, shown = (None, None) if is_dir else _size(_TIME.sub(" ", text))
        self._done.append(RemoteEntry(name, size, mtime, "dir" if is_dir else "file",
                                      resolution, size_shown=shown))


def _name(href: str) -> str | None:
    """The entry an href names, if it is one of this directory's."""
    path = href
    # urlsplit is slow: only for what it changes (a scheme, query or fragment, spaces and
    # control characters it strips)
    if ":" in href or "?" in href or "#" in href or href[:1] == " " or not href.isprintable():
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or parts.query or parts.fragment:
            return None  # another site, or a sort link (?C=N;O=D)
        path = parts.path
    if path.startswith("./"):
        path = path[2:]
    path = path.removesuffix("/")
    if not path or path.startswith("/") or "/" in path:
        return None  # the parent, an absolute link, or something deeper
    name = unquote(path, errors="surrogateescape")  # (not UTF-8: skipped by name)
    if name in (".", "..") or "/" in name:
        if name != path:  # spelled so as not to look like one: say so, as of a bad name
            log.warning("skipping link %r: it names %r, which no file of this directory "
                        "can be", href, name)
        return None
    return name


def _mtime(text: str) -> tuple[float | None, float]:
    """The time shown (read as UTC) and its resolution; read without strptime, which took
    half the time of parsing a listing."""
    match = _TIME.search(text)
    if match is None:
        return None, 1.0
    year = match.group("y") or match.group("yy") or match.group("ly") or match.group("my")
    day = match.group("d") or match.group("dd") or match.group("ld") or match.group("md")
    named = match.group("mon") or match.group("lmon") or match.group("mmon")
    month = int(match.group("mo")) if match.group("mo") else _MONTHS.get(named, 0)
    second = match.group("S")
    try:
        stamp = datetime(int(year), month, int(day), int(match.group("H")),
                         int(match.group("M")), int(second or 0), tzinfo=UTC)
    except ValueError:
        return None, 1.0
    return stamp.timestamp(), 60.0 if second is None else 1.0


def _size(text: str) -> tuple[int | None, tuple[int, int] | None]:
    """The exact bytes shown, else (None, the bounds of a rounded size: `1.4M`), else
    (None, None). The bounds are wide: one unit of the last digit shown either way, read
    as 1000- or 1024-based (servers round, floor or ceil, in either base)."""
    match = _SIZE.search(text)
    if match is None:
        return None, None
    number, unit = match.group("n"), match.group("unit")
    if not unit:
        return (int(number), None) if number.isdigit() else (None, None)
    power = " KMGTP".index(unit)
    step = 10.0 ** -len(number.partition(".")[2])
    low = math.floor((float(number) - step) * 1000 ** power)
    return None, (max(0, low), math.ceil((float(number) + step) * 1024 ** power))
