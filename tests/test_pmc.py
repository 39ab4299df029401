"""The `pmc:` presets end to end: the installed command against moto's S3 server on
127.0.0.1 holding a bucket `pmc-oa-opendata` shaped like PMC's current layout (article
versions at the root, metadata/, inventory-reports/, README.txt, deprecated/), a recording
proxy in front of it (`s3server`)."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pubmed_mirror import RetryPolicy
from pubmed_mirror._pmc import LicenceRule, licence_code
from pubmed_mirror._select import Selector
from pubmed_mirror._transport import RemoteEntry
from s3server import S3Fault, S3FaultProxy, make_bucket, moto_server, s3_client
from test_s3 import assert_files, command, object_gets, run

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
    "PMC13902.3": ("cc-by-nc-nd 4.0", {
        "PMC13902.3.xml": b"<article>13902 v3</article>\n" * 11,
    }),
    "PMC9000001.1": ("CC0", {
        "PMC9000001.1.txt": b"public domain\n" * 7,
        "fig1.png": b"\x89PNG fig\n" * 5,
    }),
    "PMC9000002.1": ("Publisher's own", {
        "PMC9000002.1.xml": b"<article>custom</article>\n" * 3,
    }),
}
# the legacy groups PMC defined, as each version's JSON puts it in one (`_pmc.LicenceRule`)
SUBSETS = {
    "pmc:oa_comm": ["PMC13901.1", "PMC9000001.1"],
    "pmc:oa_noncomm": ["PMC12788873.1", "PMC13902.3"],
    "pmc:oa_other": ["PMC9000002.1"],
    "pmc:author_manuscript": ["PMC12788873.2"],
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
    xml = f"{version}.xml"
    return json.dumps({
        "pmcid": pmcid, "version": int(number), "pmid": None, "doi": None, "title": "t",
        "citation": "c", "is_pmc_openaccess": licence != "TDM",
        "is_manuscript": licence == "TDM", "is_historical_ocr": False, "is_retracted": False,
        "license_code": licence, "xml_url": url(xml) if xml in objects else None,
        "pdf_url": url(pdf) if pdf in objects else None, "media_urls": media,
        "text_url": url(f"{version}.txt") if f"{version}.txt" in objects else None},
        indent=2).encode()


def article_files(versions: list[str] | None = None) -> dict[str, bytes]:
    """What pmc:articles must land: every object of every version, nested by version (of
    `versions` only, when given)."""
    files = {}
    for version, (_, objects) in ARTICLES.items():
        if versions is not None and version not in versions:
            continue
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


def mirror_command(proxy: S3FaultProxy, preset: str, dest: Path, *args: str) -> list[str]:
    return [*command(), "mirror", preset, "--s3-endpoint", proxy.url, "--dest", str(dest),
            "--retries", "3", "--json", *args]


def mirror(proxy: S3FaultProxy, preset: str, dest: Path, *args: str) -> Any:
    return run(*mirror_command(proxy, preset, dest, *args)[len(command()):])


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


@pytest.mark.parametrize("preset", list(SUBSETS))
def test_pmc_licence_preset_mirrors_the_versions_their_json_selects_then_nothing(
        proxy: S3FaultProxy, tmp_path: Path, preset: str) -> None:
    """A licence preset (pmc:oa_comm, ...) mirrors exactly the article versions whose own
    JSON puts them in its group, every object of each; it reads each version's JSON once
    (a chosen one's bytes become its file, not asked again), and a second run reads none:
    the listing only."""
    dest = tmp_path / "dest"
    chosen = SUBSETS[preset]
    first = mirror(proxy, preset, dest)
    assert first.returncode == 0, first.stderr
    assert_files(dest, article_files(chosen))
    documents = [f"{v}/{v}.json" for v in ARTICLES]
    expected = sorted({*documents, *article_files(chosen)})
    assert sorted(object_gets(proxy, BUCKET)) == expected
    assert {s.query["prefix"][0] for s in proxy.listings()} == {"PMC"}

    proxy.seen.clear()
    second = mirror(proxy, preset, dest)
    assert second.returncode == 0, second.stderr
    assert object_gets(proxy, BUCKET) == [] and proxy.listings()
    assert len(events(second.stdout, "file_skipped")) == len(article_files(chosen))


def test_pmc_licence_change_is_read_again_and_delete_removes_the_version(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A version whose JSON changes (a new ETag) is decided again: one that leaves the group
    is removed by --delete, one that joins it is fetched; the others' JSON is not read (a
    dry run before reads the changed ones and keeps nothing of them)."""
    dest = tmp_path / "dest"
    assert mirror(proxy, "pmc:oa_comm", dest).returncode == 0
    leaving, joining = "PMC9000001.1", "PMC9000002.1"
    saved = {v: ARTICLES[v] for v in (leaving, joining)}
    try:
        ARTICLES[leaving] = ("CC BY-NC", saved[leaving][1])
        ARTICLES[joining] = ("CC BY", saved[joining][1])
        for version in (leaving, joining):
            client.put_object(Bucket=BUCKET, Key=f"{version}/{version}.json",
                              Body=metadata(version))
        planned = mirror(proxy, "pmc:oa_comm", dest, "--dry-run")  # reads, keeps nothing
        assert planned.returncode == 0, planned.stderr
        proxy.seen.clear()
        result = mirror(proxy, "pmc:oa_comm", dest, "--delete")
        assert result.returncode == 0, result.stderr
        assert_files(dest, article_files(["PMC13901.1", joining]))
        assert sorted(object_gets(proxy, BUCKET)) == sorted(
            {f"{leaving}/{leaving}.json", *article_files([joining])})
        assert {e["name"] for e in events(result.stdout, "file_deleted")} == set(
            article_files([leaving]))
    finally:
        ARTICLES.update(saved)
        for version in (leaving, joining):
            client.put_object(Bucket=BUCKET, Key=f"{version}/{version}.json",
                              Body=metadata(version))


@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_pmc_licence_json_reads_are_retried_each_on_its_own(
        proxy: S3FaultProxy, tmp_path: Path, concurrency: str) -> None:
    """Every version's JSON answering 503 SlowDown once, or cut short once, is asked again
    on its own (more failures than the run has retries, none of its listing page asked
    again) and the run completes: the same files as without the faults."""
    for version in ARTICLES:
        key = f"{version}/{version}.json"
        proxy.faults.append(S3Fault("slowdown", lambda s, k=key: s.method == "GET" and
                                    s.key(BUCKET) == k, seconds=0.2))
    key = "PMC13901.1/PMC13901.1.json"
    proxy.faults.append(S3Fault("cut", lambda s: s.key(BUCKET) == key, after=40))
    result = mirror(proxy, "pmc:oa_comm", tmp_path / "dest", "--concurrency", concurrency)
    assert result.returncode == 0, result.stderr
    assert_files(tmp_path / "dest", article_files(SUBSETS["pmc:oa_comm"]))
    assert len(proxy.gets(BUCKET, key)) == 3  # refused, cut, read (then kept as a file)
    assert len(proxy.listings()) == 1


def test_pmc_licence_large_json_is_read_whole(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A version whose JSON is larger than a socket's read (300 KB: a long citation) is
    read whole and selects the version."""
    version = "PMC5555556.1"
    files = {f"{version}/{version}.xml": b"<big/>",
             f"{version}/{version}.json": json.dumps({
                 "pmcid": "PMC5555556", "version": 1, "is_pmc_openaccess": True,
                 "citation": "x" * 300_000, "license_code": "CC BY"}).encode()}
    for key, data in files.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
    try:
        result = mirror(proxy, "pmc:oa_comm", tmp_path / "dest")
    finally:
        client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in files]})
    assert result.returncode == 0, result.stderr
    assert_files(tmp_path / "dest", {**article_files(SUBSETS["pmc:oa_comm"]), **files})


def test_pmc_licence_json_changed_since_listed_fails_that_version_only(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A version's JSON replaced between the listing and its read: that version is not
    mirrored, the run exits 1 saying it changed, and the next run takes the new JSON."""
    version = "PMC9000002.1"
    key = f"{version}/{version}.json"
    proxy.faults.append(S3Fault("delay", lambda s: s.method == "GET" and
                                s.key(BUCKET) == key, seconds=3))
    saved = ARTICLES[version]
    command = mirror_command(proxy, "pmc:oa_comm", tmp_path / "dest")
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) as child:
            deadline = time.monotonic() + 30
            while proxy.faults and time.monotonic() < deadline:  # the read is held now
                time.sleep(0.05)
            ARTICLES[version] = ("CC BY", saved[1])
            client.put_object(Bucket=BUCKET, Key=key, Body=metadata(version))
            out, _ = child.communicate(timeout=50)
        failed = events(out, "file_failed")
        assert child.returncode == 1
        assert [e["name"] for e in failed] == [version]
        assert "changed on the server since it was listed" in failed[0]["reason"]
        again = mirror(proxy, "pmc:oa_comm", tmp_path / "dest")
        assert again.returncode == 0, again.stderr
        assert_files(tmp_path / "dest", article_files([*SUBSETS["pmc:oa_comm"], version]))
    finally:
        ARTICLES[version] = saved
        client.put_object(Bucket=BUCKET, Key=key, Body=metadata(version))


@pytest.mark.parametrize(("code", "spelled"), [
    ("CC BY", "CC BY"), ("cc-by-nc-nd 4.0", "CC BY-NC-ND"), ("CC-BY-4.0", "CC BY"),
    ("CC0-1.0", "CC0"), ("CC0 1.0 Universal", "CC0"), ("CC 0", "CC0"), ("CC-0", "CC0"),
    ("CC BY-NC-ND 3.0 DE", "CC BY-NC-ND"), ("CC BY 4.0 International", "CC BY"),
    ("CC BY-NC-ND 4.0 IGO", "CC BY-NC-ND"), ("CC BY-SA-NC", "CC BY-NC-SA"),
    ("cc_by_sa", "CC BY-SA"), ("CC BY-SA-ND", "CC BY SA ND"), ("TDM", "TDM"), (None, "")])
def test_licence_codes_are_read_in_pmc_spelling(code: str | None, spelled: str) -> None:
    """A `license_code` however written (SPDX, versions, IGO, term order) is read as PMC
    spells it; what is no Creative Commons licence stays what it says."""
    assert licence_code(code) == spelled


@pytest.mark.parametrize("broken", [b"not json", b"[]", b'{"pmcid": "PMC1", "version": 1}',
                                    b"[" * 100_000 + b"]" * 100_000])
def test_pmc_licence_unreadable_json_fails_that_version_only(
        proxy: S3FaultProxy, client: Any, tmp_path: Path, broken: bytes) -> None:
    """A version whose JSON is not JSON, not an object, or another version's is not
    mirrored and the run (and its dry run) exits 1 naming it and why; the other versions
    land; the files mirrored from it before are kept by --delete."""
    version = "PMC5555555.1"
    dest = tmp_path / "dest"
    good = json.dumps({"pmcid": "PMC5555555", "version": 1, "is_pmc_openaccess": True,
                       "license_code": "CC BY"}).encode()
    files = {f"{version}/{version}.json": good, f"{version}/{version}.xml": b"<a/>"}
    for key, data in files.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data)
    try:
        assert mirror(proxy, "pmc:oa_comm", dest).returncode == 0
        client.put_object(Bucket=BUCKET, Key=f"{version}/{version}.json", Body=broken)
        planned = run("mirror", "pmc:oa_comm", "--s3-endpoint", proxy.url, "--dest",
                      str(dest), "--dry-run")
        result = mirror(proxy, "pmc:oa_comm", dest, "--delete")
    finally:
        client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in files]})
    assert planned.returncode == 1
    fails = [line for line in planned.stdout.splitlines() if "FAIL" in line]
    assert [line.split()[0] for line in fails] == [repr(version)]
    assert "read what selects its files" in fails[0]
    assert result.returncode == 1
    assert version in result.stderr
    failed = events(result.stdout, "file_failed")
    assert [e["name"] for e in failed] == [version]
    assert f"cannot read {version}/{version}.json" in failed[0]["reason"]
    assert events(result.stdout, "file_deleted") == []
    assert_files(dest, {**article_files(SUBSETS["pmc:oa_comm"]), **files})


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


def test_pmc_ls_licence_preset_lists_the_selected_keys_as_paths(
        proxy: S3FaultProxy) -> None:
    """`ls` with a licence preset lists the keys of the versions it selects, each a path
    the mirror takes (none said to be refused)."""
    result = run("ls", "pmc:oa_noncomm", "--s3-endpoint", proxy.url, "--json")
    assert result.returncode == 0, result.stderr
    listed = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(e["name"] for e in listed) == sorted(article_files(SUBSETS["pmc:oa_noncomm"]))
    assert [e["refused"] for e in listed] == [None] * len(listed)


def test_pmc_ls_licence_preset_with_an_unreadable_json_exits_1_naming_it(
        proxy: S3FaultProxy) -> None:
    """`ls` with a licence preset whose version's JSON cannot be read lists the others,
    shows that version as not decided, says why and exits 1: its answer is incomplete."""
    version = next(v for v in ARTICLES if v in SUBSETS["pmc:oa_comm"])
    key = f"{version}/{version}.json"
    proxy.faults.extend(S3Fault("error", lambda s: s.key(BUCKET) == key) for _ in range(2))
    result = run("ls", "pmc:oa_comm", "--s3-endpoint", proxy.url, "--retries", "1")
    assert result.returncode == 1, result.stdout
    assert f"cannot read {key}" in result.stderr
    assert "1 not decided (a mirror fails them)" in result.stdout
    proxy.faults.extend(S3Fault("error", lambda s: s.key(BUCKET) == key) for _ in range(2))
    listed = run("ls", "pmc:oa_comm", "--s3-endpoint", proxy.url, "--json", "--retries", "1")
    assert listed.returncode == 1, listed.stderr
    kinds = {e["name"]: e["kind"] for e in map(json.loads, listed.stdout.splitlines())}
    assert kinds.pop(version) == "unlisted" and set(kinds.values()) == {"file"}
    again = run("ls", "pmc:oa_comm", "--s3-endpoint", proxy.url, "--json")
    assert again.returncode == 0, again.stderr  # (the faults are spent: all decided)


def _document(version: str, code: str, size: int = 0) -> bytes:
    return json.dumps({"pmcid": version.split(".")[0], "version": 1, "is_pmc_openaccess": True,
                       "is_manuscript": False, "license_code": code, "pad": "x" * size}).encode()


class _Bucket:
    """A session reading metadata objects from a dict, as S3Session.document does."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    async def document(self, name: str, limit: int) -> tuple[bytes, str | None]:
        return self.objects[name], f'"{hashlib.md5(self.objects[name]).hexdigest()}"'


async def test_selector_keeps_chosen_documents_to_be_mirrored_once_within_its_bound() -> None:
    """The selection keeps the JSON of each chosen version (never an unchosen one's, nor one
    of 256 KiB or more) for the transfer to take once, at the listed ETag only; it keeps no
    more once 8 MiB are kept, so the first listed, fetched first, stay."""
    versions = {f"PMC{n}.1": ("CC BY" if n % 2 else "CC BY-NC") for n in range(1, 2000)}
    objects = {f"{v}/{v}.json": _document(v, code, 10_000) for v, code in versions.items()}
    objects["PMC1.1/PMC1.1.json"] = _document("PMC1.1", "CC BY", 300_000)
    etags = {name: f'"{hashlib.md5(body).hexdigest()}"' for name, body in objects.items()}
    page = [RemoteEntry(name, len(body), 0.0, validator=etags[name])
            for name, body in sorted(objects.items())]
    selector = Selector(LicenceRule("oa_comm"), None, None, 1, RetryPolicy(attempts=1))
    kept, _ = await selector.choose([], page, True, _Bucket(objects))
    chosen = [e.name for e in page if versions[e.name.split("/")[0]] == "CC BY"]
    assert [e.name for e in kept] == chosen
    assert selector.take("PMC1.1/PMC1.1.json", etags["PMC1.1/PMC1.1.json"]) is None  # large
    assert selector.take("PMC2.1/PMC2.1.json", etags["PMC2.1/PMC2.1.json"]) is None  # unchosen
    first, second = chosen[1:3]
    assert selector.take(first, '"0123"') is None  # another version's ETag: dropped
    assert selector.take(first, etags[first]) is None
    assert selector.take(second, etags[second]) == objects[second]
    assert selector.take(second, etags[second]) is None  # once
    total, expected = len(objects[first]) + len(objects[second]), []
    for name in chosen[3:]:
        if total + len(objects[name]) <= 8 << 20:
            total += len(objects[name])
            expected.append(name)
    held = [n for n in chosen[3:] if selector.take(n, etags[n]) == objects[n]]
    assert held == expected and 700 < len(held) < len(chosen) - 100


@pytest.fixture(scope="module")
def paged() -> Iterator[S3FaultProxy]:
    """A bucket whose first article version holds more keys than a listing page (moto's
    1,000), its JSON sorted after them: the version is whole only on the second page."""
    with moto_server() as url:
        client = s3_client(url)
        make_bucket(client, BUCKET)
        big = {f"PMC20.1/A{i:04d}.bin": b"%d\n" % i for i in range(1005)}
        ARTICLES_PAGED.update(big)
        for version, licence in (("PMC20.1", "CC BY"), ("PMC21.1", "CC BY-NC"),
                                 ("PMC22.1", "CC0")):
            ARTICLES_PAGED[f"{version}/{version}.json"] = json.dumps(
                {"pmcid": version.split(".")[0], "version": 1, "is_pmc_openaccess": True,
                 "is_manuscript": False, "license_code": licence}).encode()
            ARTICLES_PAGED[f"{version}/{version}.xml"] = f"<{version}/>".encode()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0],
                                                         Body=item[1]),
                          ARTICLES_PAGED.items()))
        with S3FaultProxy(url).running() as server:
            yield server


ARTICLES_PAGED: dict[str, bytes] = {}


def test_pmc_licence_version_across_listing_pages_is_decided_whole(
        paged: S3FaultProxy, tmp_path: Path) -> None:
    """A version whose keys span two listing pages, its JSON on the second, is decided once
    its JSON is listed and mirrored whole; the next versions are decided as always."""
    result = mirror(paged, "pmc:oa_comm", tmp_path / "dest", "--concurrency", "8")
    assert result.returncode == 0, result.stderr
    assert len(paged.listings()) == 2
    assert_files(tmp_path / "dest", {k: v for k, v in ARTICLES_PAGED.items()
                                     if not k.startswith("PMC21.1/")})
    reads = [k for k in object_gets(paged, BUCKET) if k.endswith(".json")]
    assert sorted(reads) == ["PMC20.1/PMC20.1.json", "PMC21.1/PMC21.1.json",
                             "PMC22.1/PMC22.1.json"]
