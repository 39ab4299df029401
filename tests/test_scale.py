"""Scale: the installed command's peak RSS over a generated 100,000-entry autoindex listing
(tests/bigindex.py, streamed by its own server process). Not a straight line to 1,000,000:
SQLite's page caches (16 MiB each for the staged listing and the manifest) fill first and
then stay; the 1M figures are benchmarks/scale.py's (benchmarks/results/SCALE.md). Before
the staged listing this took 112 MB (dry run) and 156 MB (no-op run) at 100,000."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bigindex import vouched_dest

BIGINDEX = Path(__file__).with_name("bigindex.py")
COMMAND = str(Path(sys.executable).with_name("pubmed-mirror"))
N = 100_000
LIMIT_KIB = 100 * 1024

# runs the command as its only child; prints its exit code and peak RSS (KiB)
_PROBE = ("import json, resource, subprocess, sys\n"
          "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
          "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
          "print(json.dumps([code, rss]))\n")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(BIGINDEX), "serve", str(N)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield f"http://127.0.0.1:{proc.stdout.readline().strip()}/pmc/"
    finally:
        proc.terminate()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _peak_rss(url: str, dest: Path, *extra: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, COMMAND, "mirror", url, "--dest",
                          str(dest), "-q", *extra], capture_output=True, text=True,
                         check=True).stdout
    code, rss = json.loads(out)
    assert code == 0
    return int(rss)


@pytest.mark.parametrize("case", ["dry-run", "no-op"])
def test_peak_rss_of_a_100k_listing_under_100_mb(server: str, tmp_path: Path,
                                                 case: str) -> None:
    """A dry run into a fresh DEST, and a no-op run over a DEST whose manifest vouches for
    every file (exit 0: nothing fetched, the server has no files), over 100,000 listed
    entries peak under 100 MB RSS."""
    dest = tmp_path / "d"
    if case == "no-op":
        vouched_dest(dest, N)
    rss = _peak_rss(server, dest, *(["--dry-run"] if case == "dry-run" else []))
    assert rss < LIMIT_KIB, f"{rss / 1024:.0f} MB"
