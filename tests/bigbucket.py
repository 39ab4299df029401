"""A huge generated S3 bucket for the scale tests and benchmark: an aiohttp server that
answers ListObjectsV2 (`GET /BUCKET/?list-type=2&prefix=P&continuation-token=T`, path
style, as `--s3-endpoint` addresses it) with pages of 1,000 PMC-shaped keys generated on
the fly (`P` + `PMC1000000.1.xml` ..., the names, sizes and times of `bigindex`), never
holding the listing; each key's ETag is a single-part one (32 hex digits: an MD5).

    python tests/bigbucket.py serve N       # prints the port, serves until killed
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from aiohttp import web

from bigindex import MTIME, name_of, serve_app, size_of

PAGE = 1_000  # keys per page, as S3's default MaxKeys
_MODIFIED = datetime.fromtimestamp(MTIME, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def etag_of(i: int) -> str:
    return f'"{(i * 2654435761) % (1 << 128):032x}"'


def page(n: int, prefix: str, start: int, name: Callable[[int], str] = name_of,
         size: Callable[[int], int] = size_of, etag: Callable[[int], str] = etag_of) -> bytes:
    """The ListObjectsV2 page of keys `start`.. of `n` (`prefix` + `name(i)`)."""
    end = min(n, start + PAGE)
    truncated = end < n
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_NS}">'
             f"<Name>bucket</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{end - start}"
             f"</KeyCount><MaxKeys>{PAGE}</MaxKeys><EncodingType>url</EncodingType>"
             f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"]
    if truncated:
        parts.append(f"<NextContinuationToken>{end}</NextContinuationToken>")
    parts.extend(f"<Contents><Key>{escape(prefix)}{name(i)}</Key><LastModified>"
                 f"{_MODIFIED}</LastModified><ETag>{escape(etag(i))}</ETag><Size>"
                 f"{size(i)}</Size><StorageClass>STANDARD</StorageClass></Contents>"
                 for i in range(start, end))
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


def app(n: int) -> web.Application:
    async def listing(request: web.Request) -> web.Response:
        if request.query.get("list-type") != "2":
            return web.Response(status=400, text="only ListObjectsV2 here")
        start = int(request.query.get("continuation-token", "0"))
        return web.Response(body=page(n, request.query.get("prefix", ""), start),
                            content_type="application/xml")

    application = web.Application()
    application.router.add_get("/{bucket}/", listing)
    return application


async def serve(n: int) -> None:
    await serve_app(app(n))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[2])))
