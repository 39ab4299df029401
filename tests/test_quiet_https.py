"""A daily run over HTTPS against NCBI's index layout (Apache, sizes rounded), and over
lighttpd's listing: what the manifest vouches for costs no request of its own, counted in
the server's access log."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubmed_mirror._demo import make_pubmed_tree
from test_cli import run
from webservers import apache, lighttpd, missing, served_copy

DIRECTORY = "/pubmed/updatefiles/"


@pytest.fixture
def tree() -> Iterator[Path]:
    """Ten PubMed-shaped files of ~200 KiB (shown rounded: `200K`), readable by Apache."""
    source = Path(tempfile.mkdtemp(prefix="pm-quiet-src-"))
    try:
        make_pubmed_tree(source, files=10, target_bytes=200 << 10)
        with served_copy(source / "pubmed") as base:
            yield base
    finally:
        shutil.rmtree(source)



def _requests(log: Path, since: int) -> list[tuple[str, str]]:
    """(method, path) of each request Apache logged after the first `since` lines."""
    deadline = time.monotonic() + 5
    lines = log.read_text().splitlines() if log.exists() else []
    while len(lines) < since and time.monotonic() < deadline:  # (written as answered)
        time.sleep(0.05)
        lines = log.read_text().splitlines()
    return [(m, p) for m, p, _ in (line.split(" ") for line in lines[since:])]


def test_an_unchanged_tree_costs_its_index_only(tree: Path, certificate: tuple[Path, Path],
                                                tmp_path: Path) -> None:
    """Over HTTPS with rounded sizes, a second run over the unchanged tree requests only the
    directory, and one changed file adds only its own requests (and its NAME.md5's)."""
    if reason := missing("apache"):
        pytest.skip(reason)
    log = tmp_path / "access.log"
    dest = tmp_path / "m"
    served = tree / DIRECTORY.strip("/")
    with apache(tree, style="pre", tls=certificate, access_log=log) as port:
        url = f"https://127.0.0.1:{port}{DIRECTORY}"
        args = ("mirror", url, "--dest", str(dest), "--ca-file", str(certificate[0]))
        first = run(*args)
        assert first.returncode == 0, first.stderr
        seen = len(log.read_text().splitlines())
        heads = [p for m, p in _requests(log, 0) if m == "HEAD" and p != DIRECTORY]
        assert len(heads) >= 10  # the first run asked the rounded sizes (the layout holds)
        second = run(*args)
        assert second.returncode == 0, second.stderr
        quiet = _requests(log, seen)
        seen += len(quiet)
        changed = sorted(p.name for p in served.glob("*.xml.gz"))[3]
        data = (served / changed).read_bytes()[:-1000] + os.urandom(1000)
        (served / changed).write_bytes(data)
        (served / f"{changed}.md5").write_text(
            f"MD5({changed})= {hashlib.md5(data).hexdigest()}\n")
        third = run(*args)
        assert third.returncode == 0, third.stderr
        busy = _requests(log, seen)
    assert quiet and {p for _, p in quiet} == {DIRECTORY}, quiet
    assert {p for _, p in busy} - {DIRECTORY} == {DIRECTORY + changed,
                                                 f"{DIRECTORY}{changed}.md5"}, busy
    assert (dest / changed).read_bytes() == data
    assert run("verify", str(dest)).returncode == 0


@pytest.mark.parametrize("zone", ["UTC", "EST5EDT,M3.2.0,M11.1.0"])
def test_an_unchanged_lighttpd_tree_costs_its_index_only(tree: Path, tmp_path: Path,
                                                         zone: str) -> None:
    """lighttpd's listing (rounded sizes, times as `2026-Dec-06 12:00:59` in its server's
    zone, here UTC or US Eastern with summer time): a second run over the unchanged tree
    requests only the directory; a file changed since costs its own requests only."""
    if reason := missing("lighttpd"):
        pytest.skip(reason)
    log = tmp_path / "access.log"
    dest = tmp_path / "m"
    served = tree / DIRECTORY.strip("/")
    names = sorted(p.name for p in served.glob("*.xml.gz"))
    summer = 1_782_820_800.0  # 2026-06-30 12:00 UTC: another offset from UTC than December's
    os.utime(served / names[0], (summer, summer))
    with lighttpd(tree, access_log=log, zone=zone) as port:
        url = f"http://127.0.0.1:{port}{DIRECTORY}"
        args = ("mirror", url, "--dest", str(dest))
        first = run(*args)
        assert first.returncode == 0, first.stderr
        _mark(port, "/second-run")
        second = run(*args)
        assert second.returncode == 0, second.stderr
        changed = names[2]
        data = (served / changed).read_bytes()[:-1000] + os.urandom(1000)
        (served / changed).write_bytes(data)
        (served / f"{changed}.md5").write_text(
            f"MD5({changed})= {hashlib.md5(data).hexdigest()}\n")
        _mark(port, "/third-run")
        third = run(*args)
        assert third.returncode == 0, third.stderr
    # lighttpd writes its access log when it can (all of it by the time it has stopped)
    requests = _requests(log, 0)
    quiet = requests[requests.index(("GET", "/second-run")) + 1:
                     requests.index(("GET", "/third-run"))]
    busy = requests[requests.index(("GET", "/third-run")) + 1:]
    assert quiet and {p for _, p in quiet} == {DIRECTORY}, quiet
    assert {p for _, p in busy} - {DIRECTORY} == {DIRECTORY + changed,
                                                  DIRECTORY + changed + ".md5"}, busy
    assert (dest / changed).read_bytes() == data
    assert (dest / names[0]).stat().st_mtime == summer  # HEAD's time, not the page's


def _mark(port: int, path: str) -> None:
    """A request to `path` in the server's log, where the next run's begin."""
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
