"""`pubmed-mirror demo`: the generated PubMed-shaped tree, its server, and the whole command."""

from __future__ import annotations

import ftplib
import gzip
import hashlib
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from pubmed_mirror import parse_md5_file
from pubmed_mirror._demo import DemoServer, make_pubmed_tree
from test_cli import run


def test_tree_is_pubmed_shaped_with_right_md5s(tmp_path: Path) -> None:
    """Each file gunzips to a PubmedArticleSet of articles with increasing PMIDs, its .md5
    is NCBI's line with the right digest, and the same seed gives the same bytes."""
    names = make_pubmed_tree(tmp_path / "a", files=3, target_bytes=200_000)
    directory = tmp_path / "a" / "pubmed" / "updatefiles"
    assert names == [f"pubmed26n{n}.xml.gz" for n in (1335, 1336, 1337)]
    last_pmid = 0
    for name in names:
        data = (directory / name).read_bytes()
        assert 140_000 < len(data) < 260_000
        root = ET.fromstring(gzip.decompress(data))
        pmids = [int(p.text or 0) for p in root.iter("PMID")]
        assert root.tag == "PubmedArticleSet" and len(pmids) > 10
        assert pmids == sorted(pmids) and pmids[0] > last_pmid
        last_pmid = pmids[-1]
        line = (directory / (name + ".md5")).read_bytes()
        assert line == f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()
        assert parse_md5_file(line, name) == hashlib.md5(data).hexdigest()
    assert (directory / "README.txt").exists()
    again = make_pubmed_tree(tmp_path / "b", files=1, target_bytes=200_000)
    assert (tmp_path / "b/pubmed/updatefiles" / again[0]).read_bytes() == (
        directory / names[0]).read_bytes()


def test_server_serves_the_tree_throttled(tmp_path: Path) -> None:
    """The demo server hands out the files byte-exact, at no more than its per-connection
    rate, and leaves no thread behind."""
    names = make_pubmed_tree(tmp_path, files=1, target_bytes=300_000)
    path = f"/pubmed/updatefiles/{names[0]}"
    with DemoServer(tmp_path, rate_per_connection=200_000) as server:
        with ftplib.FTP() as ftp:
            ftp.connect(server.host, server.port, timeout=10)
            ftp.login()
            received = bytearray()
            start = time.monotonic()
            ftp.retrbinary(f"RETR {path}", received.extend)
            elapsed = time.monotonic() - start
    assert bytes(received) == (tmp_path / path.lstrip("/")).read_bytes()
    assert elapsed >= len(received) / 200_000 * 0.8
    assert not any(t.name == "pubmed-mirror-demo" for t in threading.enumerate())


def test_demo_command_mirrors_and_verifies(tmp_path: Path) -> None:
    """The demo mirrors every generated file (MD5-checked), keeps them with --dest, and its
    verify step finds them all good."""
    dest = tmp_path / "mirror"
    result = run("demo", "--files", "3", "--rate-per-connection", "8M", "--dest", str(dest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("MD5 ok") == 3
    assert "all good: 3 match their MD5" in result.stdout
    kept = sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))
    assert kept == sorted(f"pubmed26n{n}.xml.gz{s}" for n in (1335, 1336, 1337)
                          for s in ("", ".md5"))
