"""The `pmc:` presets end to end: the installed command against moto's S3 server on
127.0.0.1 holding a bucket `pmc-oa-opendata` shaped like PMC's current layout (article
versions at the root, metadata/, inventory-reports/, README.txt, deprecated/), a recording
proxy in front of it (`s3server`)."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3server import S3Fault, S3FaultProxy, make_bucket, moto_server, s3_client
from test_s3 import assert_files, object_gets, run

BUCKET = "pmc-oa-opendata"

# article version -> (licence code, its objects by name below its prefix)
ARTICLES: dict[str, tuple[str, dict[str, bytes]]] = {
    "PMC13901.1": ("CC BY", {
        "PMC13901.1.xml": b"<article>13901 v1</article>\n" * 40,
        "PMC13901.1.txt": b"13901 v1 as text\n" * 30,
        "PMC13901.1.pdf": b"%PDF-1.4 13901\n" * 50,
        "bcr272-1.jpg": bytes(range(256)) * 8,
        "bcr272-s1.xlsx": b"PK supplementary\n" * 9,
    }),
    "PMC12788873.1": ("CC BY-NC", {
        "PMC12788873.1.xml": b"<article>12788873 v1</article>\n" * 20,
        "PMC12788873.1.txt": b"12788873 v1\n" * 20,
    }),
    "PMC12788873.2": ("TDM", {
        "PMC12788873.2.xml": b"<article>12788873 v2</article>\n" * 21,
        "PMC12788873.2.txt": b"12788873 v2\n" * 21,
    }),
}


def metadata(version: str) -> bytes:
    """The version's metadata JSON as PMC writes it: S3 URLs with `?md5=`."""
    licence, objects = ARTICLES[version]
    pmcid, number = version.split(".")

    def url(name: str) -> str:
        md5 = hashlib.md5(objects[name]).hexdigest()
        return f"s3://{BUCKET}/{version}/{name}?md5={md5}"

    media = [url(n) for n in objects if not n.startswith(version)]
    pdf = f"{version}.pdf"
    return json.dumps({
        "pmcid": pmcid, "version": int(number), "pmid": None, "doi": None, "title": "t",
        "citation": "c", "is_pmc_openaccess": licence != "TDM",
        "is_manuscript": licence == "TDM", "is_historical_ocr": False, "is_retracted": False,
        "license_code": licence, "xml_url": url(f"{version}.xml"),
        "pdf_url": url(pdf) if pdf in objects else None, "media_urls": media,
        "text_url": url(f"{version}.txt")}, indent=2).encode()


def article_files() -> dict[str, bytes]:
    """What pmc:articles must land: every object of every version, nested by version."""
    files = {}
    for version, (_, objects) in ARTICLES.items():
        files.update({f"{version}/{name}": data for name, data in objects.items()})
        files[f"{version}/{version}.json"] = metadata(version)
    return files


def metadata_files() -> dict[str, bytes]:
    return {f"{version}.json": metadata(version) for version in ARTICLES}


def others() -> dict[str, bytes]:
    """The bucket's keys that are neither article versions nor metadata/."""
    inventory = "inventory-reports/pmc-oa-opendata/metadata"
    rows = "".join(f'"{BUCKET}","metadata/{v}.json","2026-12-05T11:47:59.000Z",'
                   f'"{hashlib.md5(metadata(v)).hexdigest()}"\n' for v in ARTICLES)
    data = gzip.compress(rows.encode())
    manifest = {"sourceBucket": BUCKET, "fileFormat": "CSV", "files": [{
        "key": f"{inventory}/data/8f5c5e61.csv.gz", "size": len(data),
        "MD5checksum": hashlib.md5(data).hexdigest()}]}
    return {
        "README.txt": b"PMC Article Datasets on AWS\n",
        f"{inventory}/2026-12-05T01-00Z/manifest.json": json.dumps(manifest).encode(),
        f"{inventory}/data/8f5c5e61.csv.gz": data,
        "deprecated/oa_comm/xml/all/PMC13901.xml": b"<legacy/>\n",
        "deprecated/oa_noncomm/txt/all/PMC12788873.txt": b"legacy\n",
        "deprecated/PMC13901.1/not-an-article.txt": b"below deprecated/\n",
    }


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto's server holding the bucket, filled once (every test only reads it)."""
    with moto_server() as url:
        client = s3_client(url)
        make_bucket(client, BUCKET)
        keys = {**article_files(), **{f"metadata/{n}": d for n, d in metadata_files().items()},
                **others()}
        for key, data in keys.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=data)
        yield url


@pytest.fixture
def client(moto: str) -> Any:
    return s3_client(moto)


@pytest.fixture
def proxy(moto: str) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(moto).running() as server:
        yield server


def mirror(proxy: S3FaultProxy, preset: str, dest: Path, *args: str) -> Any:
    return run("mirror", preset, "--s3-endpoint", proxy.url, "--dest", str(dest),
               "--retries", "3", "--json", *args)


def events(out: str, name: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, out.splitlines()) if e["event"] == name]


PRESETS = [("pmc:articles", "", "PMC", article_files),
           ("pmc:metadata", "metadata/", "metadata/", metadata_files)]


@pytest.mark.parametrize(("preset", "key_prefix", "listed", "expected"), PRESETS)
@pytest.mark.parametrize("split", [[], ["--no-split"]])
def test_pmc_preset_mirrors_exactly_its_keys_md5_checked_then_nothing(
        proxy: S3FaultProxy, tmp_path: Path, preset: str, key_prefix: str, listed: str,
        expected: Any, split: list[str]) -> None:
    """A pmc: preset mirrors exactly its keys of the bucket, nested, each MD5-checked
    against its single-part ETag, asking ListObjectsV2 only for its own keys; a second
    run lists again and fetches nothing."""
    dest = tmp_path / "dest"
    first = mirror(proxy, preset, dest, *split)
    assert first.returncode == 0, first.stderr
    assert_files(dest, expected())
    done = {e["name"]: e["md5"] for e in events(first.stdout, "file_done")}
    assert done == {n: hashlib.md5(d).hexdigest() for n, d in expected().items()}
    assert sorted(object_gets(proxy, BUCKET)) == sorted(key_prefix + n for n in expected())
    assert {s.query["prefix"][0] for s in proxy.listings()} == {listed}

    proxy.seen.clear()
    second = mirror(proxy, preset, dest, *split)
    assert second.returncode == 0, second.stderr
    assert object_gets(proxy, BUCKET) == [] and proxy.listings()
    assert events(second.stdout, "file_done") == []
    assert len(events(second.stdout, "file_skipped")) == len(expected())


def test_pmc_articles_corrupt_object_is_refetched(
        proxy: S3FaultProxy, tmp_path: Path) -> None:
    """An article object whose bytes do not match its ETag's MD5 is thrown away and fetched
    again, so the final file is the bucket's."""
    key = "PMC13901.1/PMC13901.1.pdf"
    proxy.faults.append(S3Fault("corrupt", lambda s: s.method == "GET" and
                                s.key(BUCKET) == key))
    result = mirror(proxy, "pmc:articles", tmp_path / "dest")
    assert result.returncode == 0, result.stderr
    assert_files(tmp_path / "dest", article_files())
    assert len(proxy.gets(BUCKET, key)) == 2


def test_pmc_articles_include_glob_selects_across_versions(
        proxy: S3FaultProxy, tmp_path: Path) -> None:
    """`--include '*.xml'` with pmc:articles fetches every version's JATS XML and no other
    object."""
    expected = {n: d for n, d in article_files().items() if n.endswith(".xml")}
    result = mirror(proxy, "pmc:articles", tmp_path / "dest", "--include", "*.xml")
    assert result.returncode == 0, result.stderr
    assert_files(tmp_path / "dest", expected)
    assert sorted(object_gets(proxy, BUCKET)) == sorted(expected)


@pytest.mark.parametrize("preset", ["pmc:oa_comm", "pmc:oa_noncomm"])
def test_pmc_retired_prefix_names_exit_2_in_one_line_before_any_request(
        proxy: S3FaultProxy, tmp_path: Path, preset: str) -> None:
    """The legacy names oa_comm/oa_noncomm exit 2 with one line saying PMC retired them
    and which preset to use, before any request."""
    result = mirror(proxy, preset, tmp_path / "dest")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "retired" in lines[0] and "2026-04-13" in lines[0] and "pmc:articles" in lines[0]
    assert proxy.seen == [] and not (tmp_path / "dest").exists()


@pytest.mark.parametrize("args", [["pmc:nope"], ["pmc:articles", "--transport", "https"],
                                  ["pmc:articles", "--fallback", "https://example.org/x/"],
                                  ["pmc:metadata", "--s3-endpoint", "ftp://127.0.0.1/"]])
def test_pmc_bad_usage_exits_2_before_any_request(
        proxy: S3FaultProxy, tmp_path: Path, args: list[str]) -> None:
    """An unknown pmc: name, or a pubmed-only flag or a malformed --s3-endpoint with a
    pmc: preset, is bad usage (exit 2, an error line), before any request."""
    result = run("mirror", *args, "--dest", str(tmp_path / "dest"))
    assert result.returncode == 2
    assert "error:" in result.stderr.strip().splitlines()[-1]
    assert proxy.seen == [] and not (tmp_path / "dest").exists()
