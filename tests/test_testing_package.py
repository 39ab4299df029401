"""`pubmed_mirror.testing` as users get it: the PubMed-shaped tree builder for any directory,
year and numbers, and a FaultyFTPServer whose URL exists only once it listens."""

from __future__ import annotations

import calendar
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pubmed_mirror.testing
from pubmed_mirror import FileDone, MirrorOptions, mirror
from pubmed_mirror.testing import FaultyFTPServer, make_pubmed_tree

MD5_LINE = re.compile(rb"MD5\((?P<name>[^)]+)\)= (?P<hex>[0-9a-f]{32})\n")
DAY = 86_400


def test_testing_exports() -> None:
    """The testing package offers the server, its fault types and the tree builder."""
    assert sorted(pubmed_mirror.testing.__all__) == [
        "Fault", "FaultKind", "FaultPlan", "FaultyFTPServer", "ServerStats", "make_pubmed_tree"]
    for name in pubmed_mirror.testing.__all__:
        assert hasattr(pubmed_mirror.testing, name), name


@pytest.mark.parametrize(("directory", "year", "first", "files"), [
    ("pubmed/baseline", 2027, 1, 3),
    ("", 2031, 42, 2),
    ("deep/er/tree", 2026, 9998, 3),
])
def test_tree_for_any_directory_year_and_numbers(tmp_path: Path, directory: str, year: int,
                                                 first: int, files: int) -> None:
    """The builder writes `pubmedYYnNNNN.xml.gz` for the year and numbers asked, each with
    NCBI's NAME.md5 holding its digest, into the directory asked, a day apart from January
    1st of that year."""
    names = make_pubmed_tree(tmp_path, directory=directory, year=year, first=first,
                             files=files, target_bytes=20_000, extras=False)
    where = tmp_path / directory
    assert names == [f"pubmed{year % 100:02d}n{n:04d}.xml.gz" for n in range(first, first + files)]
    assert sorted(p.name for p in where.iterdir() if p.is_file()) == sorted(
        [*names, *(f"{n}.md5" for n in names)])
    start = calendar.timegm((year, 1, 1, 12, 0, 0))
    for i, name in enumerate(names):
        data = (where / name).read_bytes()
        match = MD5_LINE.fullmatch((where / f"{name}.md5").read_bytes())
        assert match is not None and match["name"].decode() == name
        assert match["hex"].decode() == hashlib.md5(data).hexdigest()
        assert (where / name).stat().st_mtime == start + i * DAY


def test_default_tree_is_the_demo_tree(tmp_path: Path) -> None:
    """Called as the demo calls it, the builder still writes updatefiles of 2026 from 1335,
    with a README and a stats page."""
    names = make_pubmed_tree(tmp_path, files=2, target_bytes=20_000)
    where = tmp_path / "pubmed" / "updatefiles"
    assert names == ["pubmed26n1335.xml.gz", "pubmed26n1336.xml.gz"]
    assert (where / "README.txt").is_file() and (where / "pubmed26n1335_stats.html").is_file()


async def test_built_tree_mirrors_with_every_md5_checked(tmp_path: Path) -> None:
    """A built baseline mirrors from FaultyFTPServer with every file checked against its
    NAME.md5."""
    make_pubmed_tree(tmp_path / "remote", directory="pubmed/baseline", year=2027, first=1,
                     files=3, target_bytes=30_000)
    done: list[FileDone] = []
    with FaultyFTPServer(tmp_path / "remote") as server:
        report = await mirror(f"{server.url}pubmed/baseline/", tmp_path / "dest",
                              MirrorOptions(include=("*.xml.gz",)),
                              on_event=lambda e: done.append(e) if isinstance(e, FileDone)
                              else None)
    assert report.ok and len(done) == 3 and all(e.md5 for e in done)


def test_url_before_start_raises(tmp_path: Path) -> None:
    """FaultyFTPServer.url raises RuntimeError until the server has listened, then names its
    port (also after stop, for a restart on the same port)."""
    server = FaultyFTPServer(tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        _ = server.url
    with server:
        url = server.url
        assert url == f"ftp://127.0.0.1:{server.port}/" and server.port != 0
    assert server.url == url


def test_demo_needs_no_test_dependencies() -> None:
    """The demo's tree builder and the command import without pyftpdlib (a plain install)."""
    code = ("import sys; sys.modules['pyftpdlib'] = None; "
            "from pubmed_mirror._demo import DemoServer, make_pubmed_tree; "
            "import pubmed_mirror.cli; import pubmed_mirror.testing._trees")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stderr
