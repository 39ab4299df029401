"""The demo's generated PubMed tree at its default size, and DemoServer's serving, throttle
and shutdown, checked with the standard library's own gzip, XML, MD5 and FTP code."""

from __future__ import annotations

import calendar
import ftplib
import gzip
import hashlib
import re
import threading
import time
import xml.etree.ElementTree as ET
from fnmatch import fnmatch
from pathlib import Path

import pytest

from pubmed_mirror._demo import DemoServer, make_pubmed_tree

TARGET = 3 << 20  # make_pubmed_tree's default target_bytes
FILES = 12  # ... and its default number of files
MD5_LINE = re.compile(rb"MD5\((?P<name>[^)]+)\)= (?P<hex>[0-9a-f]{32})\n")
PMID = re.compile(rb"<PMID Version=\"1\">(\d+)</PMID>")  # cheaper than parsing twice
DAY = 86_400


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The default tree, generated once for the module (it takes a couple of seconds)."""
    root = tmp_path_factory.mktemp("demo")
    return root, make_pubmed_tree(root)


def updatefiles(root: Path) -> Path:
    return root / "pubmed" / "updatefiles"


def download(server: DemoServer, path: str) -> tuple[bytes, float]:
    """RETR `path` in binary passive mode; return the bytes and the seconds RETR took."""
    received = bytearray()
    with ftplib.FTP() as ftp:
        ftp.connect(server.host, server.port, timeout=10)
        ftp.login()
        ftp.set_pasv(True)
        start = time.monotonic()
        ftp.retrbinary(f"RETR {path}", received.extend, blocksize=1 << 16)
        elapsed = time.monotonic() - start
    return bytes(received), elapsed


def test_default_tree_lists_twelve_data_files_and_extras(tree: tuple[Path, list[str]]) -> None:
    """The default call returns twelve consecutive names and writes a .md5 for each, plus a
    README and a stats page that a `*.xml.gz` selection leaves out."""
    root, names = tree
    assert names == [f"pubmed26n{n:04d}.xml.gz" for n in range(1335, 1335 + FILES)]
    on_disk = sorted(p.name for p in updatefiles(root).iterdir())
    extras = ["README.txt", "pubmed26n1335_stats.html"]
    assert on_disk == sorted([*names, *(n + ".md5" for n in names), *extras])
    assert [n for n in on_disk if fnmatch(n, "*.xml.gz")] == names


@pytest.mark.parametrize("index", range(FILES))
def test_each_file_is_pubmed_xml_with_ncbi_md5(tree: tuple[Path, list[str]], index: int) -> None:
    """Each data file gunzips to a PubmedArticleSet of articles, is within 30% of the target
    size, and its .md5 is NCBI's one line holding the file's real digest."""
    root, names = tree
    name = names[index]
    data = (updatefiles(root) / name).read_bytes()
    assert 0.7 * TARGET <= len(data) <= 1.3 * TARGET, len(data)
    text = gzip.decompress(data)
    assert text.startswith(b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE PubmedArticleSet')
    article_set = ET.fromstring(text)
    assert article_set.tag == "PubmedArticleSet"
    articles = article_set.findall("PubmedArticle")
    assert len(articles) >= 1
    citation = articles[0].find("MedlineCitation")
    assert citation is not None and citation.get("Status") == "MEDLINE"
    for element in ("PMID", "Article/Journal", "Article/ArticleTitle",
                    "Article/Abstract/AbstractText", "Article/AuthorList"):
        assert citation.find(element) is not None, element
    match = MD5_LINE.fullmatch((updatefiles(root) / f"{name}.md5").read_bytes())
    assert match is not None
    assert match["name"].decode() == name
    assert match["hex"].decode() == hashlib.md5(data).hexdigest()


def test_pmids_increase_across_files(tree: tuple[Path, list[str]]) -> None:
    """PMIDs increase strictly within each file and from one file to the next."""
    root, names = tree
    pmids: list[int] = []
    for name in names:
        text = gzip.decompress((updatefiles(root) / name).read_bytes())
        pmids += [int(p) for p in PMID.findall(text)]
    assert len(pmids) > FILES
    assert all(a < b for a, b in zip(pmids, pmids[1:], strict=False))


def test_mtimes_are_fixed_days_apart(tree: tuple[Path, list[str]]) -> None:
    """Data files carry fixed past mtimes one day apart, and each .md5 its data file's mtime."""
    root, names = tree
    mtimes = [(updatefiles(root) / n).stat().st_mtime for n in names]
    assert mtimes[0] == calendar.timegm((2026, 1, 1, 12, 0, 0))
    assert [b - a for a, b in zip(mtimes, mtimes[1:], strict=False)] == [DAY] * (FILES - 1)
    for name, mtime in zip(names, mtimes, strict=True):
        assert (updatefiles(root) / f"{name}.md5").stat().st_mtime == mtime


def test_same_seed_same_bytes_other_seed_other_bytes(
        tree: tuple[Path, list[str]], tmp_path: Path) -> None:
    """Regenerating with the same seed reproduces the files byte for byte; another seed
    gives different files."""
    root, names = tree
    # fewer files with the same seed must still reproduce the first ones exactly
    again = make_pubmed_tree(tmp_path / "same", files=2)
    for name in again:
        for suffix in ("", ".md5"):
            assert (updatefiles(tmp_path / "same") / (name + suffix)).read_bytes() == (
                updatefiles(root) / (name + suffix)).read_bytes()
    other = make_pubmed_tree(tmp_path / "other", files=1, seed=27)
    assert other == names[:1]
    assert (updatefiles(tmp_path / "other") / other[0]).read_bytes() != (
        updatefiles(root) / names[0]).read_bytes()


def test_server_serves_a_generated_file_byte_exact(tree: tuple[Path, list[str]]) -> None:
    """DemoServer listens on 127.0.0.1 and hands a generated file to anonymous ftplib
    byte-exact."""
    root, names = tree
    with DemoServer(root, rate_per_connection=256 << 20) as server:
        assert server.host == "127.0.0.1"
        assert isinstance(server.port, int) and server.port > 0
        assert server.url == f"ftp://127.0.0.1:{server.port}/"
        data, _ = download(server, f"/pubmed/updatefiles/{names[-1]}")
    assert data == (updatefiles(root) / names[-1]).read_bytes()


def test_server_is_read_only(tmp_path: Path) -> None:
    """An anonymous upload is refused and writes nothing into the served directory."""
    (tmp_path / "keep.txt").write_bytes(b"x")
    with DemoServer(tmp_path) as server, ftplib.FTP() as ftp:
        ftp.connect(server.host, server.port, timeout=10)
        ftp.login()
        with pytest.raises(ftplib.error_perm):
            ftp.storbinary("STOR new.txt", _OneChunk(b"data"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


class _OneChunk:
    """A minimal file-like object for storbinary."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        data, self._data = self._data, b""
        return data


def test_throttle_slows_a_download(tmp_path: Path) -> None:
    """A 1 MiB download at 512 KiB/s per connection takes at least 1.5 s."""
    payload = hashlib.sha256(b"demo").digest() * (32 << 10)  # 1 MiB
    (tmp_path / "one-mib.bin").write_bytes(payload)
    with DemoServer(tmp_path, rate_per_connection=512 << 10) as server:
        data, elapsed = download(server, "/one-mib.bin")
    assert data == payload
    assert elapsed >= 1.5, elapsed


def test_stop_leaves_no_thread_even_with_a_client_connected(tmp_path: Path) -> None:
    """stop() with a logged-in client still connected returns promptly and leaves no
    thread behind."""
    before = set(threading.enumerate())
    server = DemoServer(tmp_path)
    server.start()
    assert len(set(threading.enumerate()) - before) == 1
    with ftplib.FTP() as ftp:
        ftp.connect(server.host, server.port, timeout=10)
        ftp.login()
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 5
    assert set(threading.enumerate()) - before == set()
