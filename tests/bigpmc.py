"""A huge generated bucket shaped like PMC's Article Datasets, for the licence presets' scale
benchmark: an aiohttp server answering ListObjectsV2 (path style, as `--s3-endpoint`
addresses it) with pages of 1,000 keys of article versions, each `PMCnnnnnnn.1/` holding
its `.json`, `.txt`, `.xml` and `fig1.jpg` (S3's order), generated on the fly and never
held, and a GET of each version's JSON (`license_code` by the version's number: "CC BY",
"CC BY-NC" or a publisher's own, in turn). And DEST as a `pmc:oa_comm` mirror of it would
leave it: the chosen versions' files, their manifest rows and what every version's JSON
said (the manifest's `facts`), for a no-op incremental run.

    python tests/bigpmc.py serve N           # N objects (4 a version); prints the port
    python tests/bigpmc.py dest N DEST [PRESET]  # the vouched-for DEST of pmc:oa_comm
                                             # (or of PRESET: pmc:articles, every file)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from functools import lru_cache
from pathlib import Path

from aiohttp import web

from bigbucket import etag_of, page
from bigindex import serve_app, vouched_files

PARTS = (".json", ".txt", ".xml")  # `PMCn.1/PMCn.1.json` ..., then `PMCn.1/fig1.jpg`
LICENCES = ("CC BY", "CC BY-NC", "Publisher's own")


def version_of(v: int) -> str:
    return f"PMC{1_000_000 + v}.1"


def name_of(i: int) -> str:
    v, part = divmod(i, 4)
    version = version_of(v)
    return f"{version}/{version}{PARTS[part]}" if part < 3 else f"{version}/fig1.jpg"


@lru_cache(maxsize=4096)
def document(v: int) -> bytes:
    """Version `v`'s JSON, as PMC writes one (the fields the presets read, and others)."""
    version = version_of(v)
    return json.dumps({
        "pmcid": version.split(".")[0], "version": 1, "pmid": 30_000_000 + v,
        "is_pmc_openaccess": True, "is_manuscript": False, "is_historical_ocr": False,
        "is_retracted": False, "license_code": LICENCES[v % 3],
        "xml_url": f"s3://pmc-oa-opendata/{version}/{version}.xml"}).encode()


def size_of(i: int) -> int:
    v, part = divmod(i, 4)
    return len(document(v)) if part == 0 else 2_000 + (i * 7919) % 50_000


def etag(i: int) -> str:
    v, part = divmod(i, 4)
    return f'"{hashlib.md5(document(v)).hexdigest()}"' if part == 0 else etag_of(i)


def app(n: int) -> web.Application:
    async def listing(request: web.Request) -> web.Response:
        if request.query.get("list-type") != "2" or request.query.get("prefix") != "PMC":
            return web.Response(status=400, text="only ListObjectsV2 of prefix PMC here")
        start = int(request.query.get("continuation-token", "0"))
        return web.Response(body=page(n, "", start, name_of, size_of, etag),
                            content_type="application/xml")

    async def get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        version = key.split("/", 1)[0]
        v = int(version.removeprefix("PMC").split(".")[0]) - 1_000_000
        if key != f"{version}/{version}.json" or not 0 <= v < (n + 3) // 4:
            return web.Response(status=404, text="only the versions' JSONs here")
        return web.Response(body=document(v), content_type="application/json",
                            headers={"ETag": etag(4 * v), "Last-Modified":
                                     "Sun, 01 Mar 2026 12:00:00 GMT"})

    application = web.Application()
    application.router.add_get("/{bucket}/", listing)
    application.router.add_get("/{bucket}/{key:.+}", get)
    return application


def vouched_dest(dest: Path, n: int, preset: str = "pmc:oa_comm") -> None:
    """DEST as a complete mirror of the generated bucket by `preset` (`pmc:oa_comm`, or
    `pmc:articles`: every file) would leave it: the chosen versions' files (sparse, at
    their size and time), a manifest row for each, and what every version's JSON said, as
    of its ETag (rows by executemany: a million single records would take minutes)."""
    from pubmed_mirror._pmc import LicenceRule
    from pubmed_mirror._state import Manifest

    rule = LicenceRule("oa_comm")
    dest.mkdir(parents=True, exist_ok=True)
    Manifest.open(dest).close()
    chosen = [i for i in range(n) if preset == "pmc:articles" or rule.chosen(rule.facts(
        version_of(i // 4), document(i // 4)))]
    db = vouched_files(dest, ((name_of(i), size_of(i), etag(i)) for i in chosen))
    with db:
        db.executemany("INSERT OR REPLACE INTO facts VALUES (?, ?, ?)",
                       ((name_of(4 * v), etag(4 * v), rule.facts(version_of(v), document(v)))
                        for v in range((n + 3) // 4)))
    db.close()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        asyncio.run(serve_app(app(int(sys.argv[2]))))
    else:
        vouched_dest(Path(sys.argv[3]), int(sys.argv[2]), *sys.argv[4:5])
