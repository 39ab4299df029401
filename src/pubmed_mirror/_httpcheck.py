"""Whether an HTTP answer to a ranged GET holds the bytes asked for: from the offset asked,
of the version the part holds, in no content-coding that was not asked for.

The version is told three ways, each from the answer's headers, before any byte of its
body reaches a part: a 206's Content-Range total and a 200's Content-Length must be the
remote size; a resume names the part's validator in If-Range, so a server whose file changed
answers the whole new file (200), which is refused rather than read past; and the answer's
own ETag or Last-Modified must be the part's. A refused answer raises WrongVersion: the part
is thrown away and the file fetched again from 0.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
from collections.abc import Mapping

from ._errors import ProtocolError, WrongVersion
from ._transfer import RemoteFile
from ._transport import RemoteEntry

__all__ = ["check_answer", "head_entry", "request_headers", "validator"]

Headers = Mapping[str, str]  # names lowercased (aiohttp's are case-insensitive anyway)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
# codings a server declares for a file stored so (Apache's `AddEncoding x-gzip .gz`, which
# like all of mod_mime looks at every extension: NAME.xml.gz.md5 comes x-gzip-encoded too):
# the body is the file's own bytes, as its length then shows
_STORED_CODINGS = {"gz": ("gzip", "x-gzip"), "tgz": ("gzip", "x-gzip"),
                   "Z": ("compress", "x-compress"), "bz2": ("bzip2", "x-bzip2")}


def head_entry(headers: Headers, name: str) -> RemoteEntry:
    """What an answer to HEAD says of the file `name`: its size (Content-Length), time
    (Last-Modified) and validator (None where it does not say)."""
    length, modified = headers.get("content-length"), headers.get("last-modified")
    size = int(length) if length is not None and length.isdigit() else None
    mtime = None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            mtime = email.utils.parsedate_to_datetime(modified).timestamp()
    return RemoteEntry(name, size, mtime, validator=validator(headers))


def validator(headers: Headers) -> str | None:
    """What names the answer's version: a strong ETag, else Last-Modified (a weak ETag
    cannot be used in If-Range)."""
    etag = headers.get("etag")
    if etag and not etag.startswith("W/"):
        return etag
    return headers.get("last-modified") or None


def request_headers(offset: int, expect: RemoteFile | None) -> dict[str, str]:
    """Range from `offset`; resuming a part of a known version, If-Range with its
    validator: a server whose file changed then answers the whole new file (200)."""
    headers = {"Range": f"bytes={offset}-"}
    named = expect.validator if expect is not None else None
    if offset and named and named.isascii() and named.isprintable():  # (a header's value)
        headers["If-Range"] = named
    return headers


def check_answer(status: int, headers: Headers, path: str, offset: int,
                 expect: RemoteFile | None, *, store: bool = False) -> int:
    """How many bytes at the start of the body to read past (a server that ignores Range
    sends the whole file: those the part holds already). Raises WrongVersion for an answer
    of another version than `expect` (or in a coding not asked for), ProtocolError for one
    that is not what was asked. `store`: an object store's answer (S3), whose
    Content-Encoding says how the object is stored."""
    coded = False if store else _coding(headers, path)
    if status == 206:
        _check_range(headers.get("content-range", ""), path, offset, expect)
    elif status == 200:
        _check_whole(headers, path, offset, expect, coded)
    else:
        raise ProtocolError(f"unexpected answer {status} to a GET", path=path)
    if offset and expect is not None and expect.validator:
        _check_validator(headers, path, expect.validator)
    return offset if status == 200 else 0


def _coding(headers: Headers, path: str) -> bool:
    """Whether the body is declared encoded (only as the file is stored: see
    `_STORED_CODINGS`); any other coding is refused (identity was asked for)."""
    coding = headers.get("content-encoding", "").strip().lower()
    if coding in ("", "identity"):
        return False
    extensions = path.rsplit("/", 1)[-1].split(".")[1:]
    if not any(coding in _STORED_CODINGS.get(extension, ()) for extension in extensions):
        raise WrongVersion(f"the answer is {coding}-encoded, though identity was asked for: "
                           "not the file's bytes", path=path)
    return True


def _check_range(value: str, path: str, offset: int, expect: RemoteFile | None) -> None:
    match = _CONTENT_RANGE.fullmatch(value)
    if match is None or int(match.group(1)) != offset:
        raise ProtocolError(f"asked for bytes from {offset}, got {value!r}", path=path)
    if expect is not None and match.group(3) != str(expect.size):
        total = "unknown" if match.group(3) == "*" else f"{match.group(3)} bytes"
        raise WrongVersion(f"the range answered is of another version (total {total}, not "
                           f"{expect.size}): starting again from 0", path=path)


def _check_whole(headers: Headers, path: str, offset: int, expect: RemoteFile | None,
                 coded: bool) -> None:
    if expect is None:
        return
    if offset and expect.validator:
        raise WrongVersion("the whole file was answered to If-Range: it changed on the "
                           "server since the part was started", path=path)
    length = headers.get("content-length", "")
    if not length.isdigit():
        if offset or coded:  # a chunked answer: nothing says which version it is
            raise WrongVersion("an answer without Content-Length cannot be told to be the "
                               "version the part holds", path=path)
    elif int(length) != expect.size:
        raise WrongVersion(f"the answer is {length} bytes long, not the remote size "
                           f"{expect.size}: another version", path=path)


def _check_validator(headers: Headers, path: str, ours: str) -> None:
    """The answer's own ETag or Last-Modified (whichever the part recorded) is the part's,
    for a server that honours Range but not If-Range."""
    theirs = headers.get("etag" if ours.startswith(('"', "W/")) else "last-modified")
    if theirs is not None and theirs != ours:
        raise WrongVersion(f"changed on the server: {theirs}, the part was started from "
                           f"{ours}", path=path)
