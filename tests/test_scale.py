"""Scale: the installed command's peak RSS over a generated listing of N PMC-shaped
objects, streamed by its own server process: a ListObjectsV2 stream of pages of 1,000 keys
(tests/bigbucket.py, `s3://bucket/pmc/ --s3-endpoint`), one autoindex page
(tests/bigindex.py), and `pmc:oa_comm` over generated article versions (tests/bigpmc.py:
the dry run reads every version's JSON; the no-op run's manifest says what each said).
N is kept small enough for CI; the 1,000,000-object figures are benchmarks/scale.py's
(benchmarks/results/SCALE.md). Not a straight line to 1,000,000: SQLite's page caches
(16 MiB each for the staged listing and the manifest) fill first and then stay. Before
the staged listing an autoindex of 100,000 took 112 MB (dry run) and 156 MB (no-op run)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bigbucket import etag_of
from bigindex import vouched_dest
from bigpmc import vouched_dest as vouched_pmc_dest

HERE = Path(__file__).parent
COMMAND = str(Path(sys.executable).with_name("pubmed-mirror"))
N = 50_000
LIMIT_KIB = 100 * 1024

# runs the command as its only child; prints its exit code and peak RSS (KiB)
_PROBE = ("import json, resource, subprocess, sys\n"
          "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
          "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
          "print(json.dumps([code, rss]))\n")


_SCRIPTS = {"s3": "bigbucket.py", "autoindex": "bigindex.py", "pmc": "bigpmc.py"}


@pytest.fixture(scope="module", params=list(_SCRIPTS))
def source(request: pytest.FixtureRequest) -> Iterator[tuple[str, list[str]]]:
    """(the listing's kind, the command's source arguments) of a generated server."""
    script = HERE / _SCRIPTS[request.param]
    proc = subprocess.Popen([sys.executable, str(script), "serve", str(N)],
                            stdout=subprocess.PIPE, text=True, cwd=HERE)
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        endpoint = ["--s3-endpoint", f"http://127.0.0.1:{port}"]
        yield request.param, {"s3": ["s3://bucket/pmc/", *endpoint],
                              "pmc": ["pmc:oa_comm", *endpoint],
                              "autoindex": [f"http://127.0.0.1:{port}/pmc/"]}[request.param]
    finally:
        proc.terminate()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _peak_rss(source: list[str], dest: Path, *extra: str) -> int:
    out = subprocess.run([sys.executable, "-c", _PROBE, COMMAND, "mirror", *source, "--dest",
                          str(dest), "-q", *extra], capture_output=True, text=True,
                         check=True).stdout
    code, rss = json.loads(out)
    assert code == 0
    return int(rss)


@pytest.mark.parametrize("case", ["dry-run", "no-op"])
def test_peak_rss_of_a_50k_listing_under_100_mb(source: tuple[str, list[str]], tmp_path: Path,
                                                case: str) -> None:
    """A dry run into a fresh DEST, and a no-op run over a DEST whose manifest vouches for
    every object (exit 0: nothing fetched, the server has no objects), over 50,000 listed
    objects peak under 100 MB RSS."""
    kind, arguments = source
    dest = tmp_path / "d"
    if case == "no-op" and kind == "pmc":
        vouched_pmc_dest(dest, N)
    elif case == "no-op":
        vouched_dest(dest, N, etag_of if kind == "s3" else None)
    rss = _peak_rss(arguments, dest, *(["--dry-run"] if case == "dry-run" else []))
    assert rss < LIMIT_KIB, f"{rss / 1024:.0f} MB"
