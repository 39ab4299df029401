"""ListObjectsV2, one page at a time: the query for a page, and its answer parsed as it
arrives (an XMLPullParser fed chunk by chunk, each `<Contents>` turned into an entry and
dropped), so neither a page nor the listing is ever held as text or as a tree.

A listing is a `Listing`: the entries so far and the continuation token of the next page.
It outlives the session that reads it, so a page that fails is asked again from its own
token by the next attempt, never the listing from the start.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote, unquote_plus

from ._errors import ProtocolError
from ._transport import RemoteEntry

__all__ = ["Listing", "PageParser", "error_code", "etag_md5", "in_key_order", "page_query"]

log = logging.getLogger("pubmed_mirror")

_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(slots=True)
class Listing:
    """A listing under way: what the pages read so far held, and where the next begins
    (None: at the start; `done` once a page said it was the last). Pages are asked for the
    keys beginning with `prefix + narrow`; names are relative to `prefix`. `held`: the
    entries a selection keeps for the next page (`_select`: a group not yet whole)."""

    prefix: str
    narrow: str = ""
    entries: list[RemoteEntry] = field(default_factory=list)
    held: list[RemoteEntry] = field(default_factory=list)
    token: str | None = None
    done: bool = False
    pages: int = 0
    last: str | None = None  # the last name of the pages kept (`in_key_order`)
    tokens: set[str] = field(default_factory=set)  # the continuation tokens given so far


def in_key_order(last: str | None, page: list[RemoteEntry], path: str) -> str | None:
    """The page's last name (else `last`), once its names are found after `last` and each
    after the one before, in the order S3 promises (UTF-8 binary, which the code point
    order of str matches). A run decides and fetches files while the listing goes on
    (`Staging.decide_early`) on that promise alone: a server that breaks it is not
    trusted with the rest (a ProtocolError) rather than have a name's directory or NAME.md5
    come too late. A name with a line feed is passed over: XML turns a CR into one in a
    listing sent unencoded, and such a name is dropped as unsafe anyway."""
    for entry in page:
        if "\n" in entry.name:
            continue
        if last is not None and entry.name <= last:
            raise ProtocolError(f"the listing is not in key order: {entry.name!r} after "
                                f"{last!r} (S3 lists keys sorted)", path=path)
        last = entry.name
    return last


def page_query(prefix: str, token: str | None) -> str:
    """The query string of a ListObjectsV2 page (keys URL-encoded in the answer: a key may
    hold characters XML 1.0 cannot carry)."""
    params = [("list-type", "2"), ("encoding-type", "url"), ("prefix", prefix)]
    if token is not None:
        params.append(("continuation-token", token))
    return "&".join(f"{k}={quote(v, safe='-_.~')}" for k, v in params)


def etag_md5(etag: str | None) -> str | None:
    """A single-part ETag (32 hex digits, no `-N`) is the object's MD5; any other is not."""
    if etag is None:
        return None
    bare = etag.strip('"').lower()
    return bare if _MD5.fullmatch(bare) else None


@dataclass(frozen=True, slots=True)
class _Tags:
    """The element names of a page, in the namespace its elements are in: S3's
    (`http://s3.amazonaws.com/doc/2006-03-01/`), another an S3-compatible server uses
    (s3rver: `http://doc.s3.amazonaws.com/2006-03-01/`), or none."""

    contents: str
    truncated: str
    token: str
    root: str
    key: str
    size: str
    modified: str
    etag: str
    encoding: str

    @classmethod
    def of(cls, tag: str) -> _Tags:
        """The names in the namespace of `tag`, a page's first element to end."""
        ns = tag[:tag.index("}") + 1] if tag.startswith("{") and "}" in tag else ""
        return cls(*(ns + name for name in (
            "Contents", "IsTruncated", "NextContinuationToken", "ListBucketResult", "Key",
            "Size", "LastModified", "ETag", "EncodingType")))


class PageParser:
    """One page of a ListObjectsV2 answer, fed as it arrives; `feed` yields its entries
    (names relative to the prefix) as their elements end. After `close`: `truncated` and
    `token` say whether and where the listing goes on. Only the ends of elements are read
    (half the events; the root is the last to end), each `<Contents>` emptied once read.

    Keys are URL-decoded only when the page says they were encoded (`<EncodingType>url`):
    a server that ignores the request sends them as they are, `%2F` and `+` included.
    Until the page says so (S3 may say it after the keys), its `<Contents>` wait as
    fields, a page's worth at most."""

    def __init__(self, prefix: str, path: str) -> None:
        self._prefix = prefix
        self._path = path
        self._parser: ET.XMLPullParser[ET.Element] = ET.XMLPullParser(events=("end",))
        self._last: ET.Element | None = None
        self.truncated: bool | None = None
        self.token: str | None = None
        self._encoded: bool | None = None  # None: the page has not said yet
        self._waiting: list[dict[str, str]] = []
        self._tags: _Tags | None = None  # once the first element ended

    def feed(self, chunk: bytes) -> Iterator[RemoteEntry]:
        try:
            self._parser.feed(chunk)
            yield from self._events()
        except ET.ParseError as exc:
            raise ProtocolError(f"not a ListObjectsV2 answer: {exc}", path=self._path) from None

    def close(self) -> Iterator[RemoteEntry]:
        try:
            self._parser.close()
            yield from self._events()
        except ET.ParseError as exc:
            raise ProtocolError(f"not a ListObjectsV2 answer: {exc}", path=self._path) from None
        self._encoded = bool(self._encoded)
        yield from self._flush()
        if self._last is None or self._tags is None or self._last.tag != self._tags.root:
            raise ProtocolError("not a ListObjectsV2 answer", path=self._path)
        if self.truncated is None or (self.truncated and not self.token):
            raise ProtocolError("a listing page that does not say where the next begins",
                                path=self._path)

    def _events(self) -> Iterator[RemoteEntry]:
        for _, element in self._parser.read_events():  # type: ignore[misc]
            assert isinstance(element, ET.Element)
            self._last = element
            tag = element.tag
            tags = self._tags = self._tags or _Tags.of(tag)
            if tag == tags.contents:
                self._waiting.append({child.tag: child.text or "" for child in element})
                element.clear()  # (an empty element stays in the page's root: a page's worth)
                if self._encoded is not None:
                    yield from self._flush()
            elif tag == tags.encoding:
                self._encoded = (element.text or "").strip().lower() == "url"
                yield from self._flush()
            elif tag == tags.truncated:
                self.truncated = (element.text or "").strip() == "true"
            elif tag == tags.token:
                self.token = (element.text or "").strip()

    def _flush(self) -> Iterator[RemoteEntry]:
        waiting, self._waiting = self._waiting, []
        for fields in waiting:
            entry = self._entry(fields)
            if entry is not None:
                yield entry

    def _entry(self, fields: dict[str, str]) -> RemoteEntry | None:
        tags = self._tags
        assert tags is not None  # (a <Contents> ended)
        key = fields.get(tags.key, "")
        key = unquote_plus(key) if self._encoded else key
        size = fields.get(tags.size, "")
        if not key.startswith(self._prefix) or key == self._prefix:
            return None
        if not size.isdigit():
            raise ProtocolError(f"a listing entry without a size: {key!r}", path=self._path)
        name = key[len(self._prefix):]
        etag = fields.get(tags.etag) or None
        if name.endswith("/"):  # a "folder" marker: neither a file nor a directory to
            if size != "0":      # list (the prefix's listing already holds what is below)
                log.warning("skipping entry %r: a key ending in '/' (%s bytes) cannot be a "
                            "file here", name, size)
            return None
        return RemoteEntry(name, int(size), _time(fields.get(tags.modified, "")),
                           validator=etag, md5=etag_md5(etag))


def _time(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        return None


def error_code(body: bytes) -> tuple[str | None, str | None]:
    """An S3 error answer's `<Code>` and `<Message>` (None when the body is not one)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None, None
    if root.tag != "Error":
        return None, None
    return root.findtext("Code"), root.findtext("Message")
