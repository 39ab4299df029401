"""Scale: peak RSS and wall time of `pubmed-mirror mirror URL --dest D --dry-run` (a fresh
DEST: every object to fetch) and of a no-op incremental run (a DEST whose manifest vouches
for every object) over N generated PMC-shaped names: a generated ListObjectsV2 stream
(tests/bigbucket.py: `s3://bucket/pmc/ --s3-endpoint`, pages of 1,000 keys) or, with
`--autoindex`, one autoindex page (tests/bigindex.py), or, with `--pmc`, `pmc:oa_comm` over a
generated bucket of PMC-shaped article versions (tests/bigpmc.py: four keys a version, a
third of the versions chosen by their JSON; the fresh dry run reads every JSON, the vouched
DEST remembers what each said); each server in its own process.

    python benchmarks/scale.py [--autoindex | --pmc] 100000 [1000000 ...]

Prints one JSON object per (N, case); the phases (listing, comparison) come from the run's
own `-v` log line ("planned in ...").
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIGINDEX = ROOT / "tests" / "bigindex.py"
BIGBUCKET = ROOT / "tests" / "bigbucket.py"
BIGPMC = ROOT / "tests" / "bigpmc.py"
_PHASES = re.compile(r"listed (\d+) entries in ([\d.]+) s, compared in ([\d.]+) s "
                     r"\(and ([\d.]+) s while listing\)")

# runs the command as its only child: wall seconds, CPU seconds, peak RSS (KiB), stderr tail
_PROBE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, "
    "text=True)\n"
    "wall = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'code': p.returncode, 'wall': wall, 'cpu': u.ru_utime + u.ru_stime, "
    "'rss_kib': u.ru_maxrss, 'stderr': p.stderr[-4000:]}))\n")


def command() -> list[str]:
    return [str(Path(sys.executable).with_name("pubmed-mirror"))]


def probe(argv: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                         text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out)
    phases = _PHASES.findall(result.pop("stderr"))
    if phases:  # a pipelined run decides most files while listing: both are comparison
        listed, listing, comparing, early = phases[-1]
        whole = float(comparing) + float(early)
        result.update(listed=int(listed), listing_s=float(listing),
                      comparison_s=float(comparing), decided_while_listing_s=float(early),
                      comparison_per_s=round(int(listed) / max(whole, 1e-9)))
    return result


def measure(n: int, work: Path, kind: str = "s3") -> list[dict[str, Any]]:
    """The three cases over N generated objects of `kind`: "s3", "autoindex" or "pmc"."""
    script = {"s3": BIGBUCKET, "autoindex": BIGINDEX, "pmc": BIGPMC}[kind]
    server = subprocess.Popen([sys.executable, str(script), "serve", str(n)],
                              stdout=subprocess.PIPE, text=True, cwd=BIGINDEX.parent)
    try:
        assert server.stdout is not None
        port = server.stdout.readline().strip()
        endpoint = ["--s3-endpoint", f"http://127.0.0.1:{port}"]
        source = {"s3": ["s3://bucket/pmc/", *endpoint], "pmc": ["pmc:oa_comm", *endpoint],
                  "autoindex": [f"http://127.0.0.1:{port}/pmc/"]}[kind]
        listing = {"s3": "ListObjectsV2 stream", "autoindex": "autoindex page",
                   "pmc": "pmc:oa_comm, ListObjectsV2 stream"}[kind]
        seed = {"s3": [str(BIGINDEX), "dest", str(n), "{dest}", "s3"],
                "autoindex": [str(BIGINDEX), "dest", str(n), "{dest}"],
                "pmc": [str(BIGPMC), "dest", str(n), "{dest}"]}[kind]
        results = []
        fresh = work / f"fresh{n}"
        run = probe([*command(), "mirror", *source, "--dest", str(fresh), "--dry-run", "-v"])
        results.append({"n": n, "listing": listing, "case": "dry-run, fresh DEST", **run})
        shutil.rmtree(fresh, ignore_errors=True)
        vouched = work / f"vouched{n}"
        started = time.perf_counter()
        subprocess.run([sys.executable, *(a.format(dest=vouched) for a in seed)], check=True,
                       cwd=BIGINDEX.parent)
        setup = time.perf_counter() - started
        for case, extra in (("dry-run, vouched DEST", ["--dry-run"]),
                            ("no-op incremental run", [])):
            run = probe([*command(), "mirror", *source, "--dest", str(vouched), "-v", *extra])
            results.append({"n": n, "listing": listing, "case": case,
                            "setup_s": round(setup, 1), **run})
        shutil.rmtree(vouched, ignore_errors=True)
        return results
    finally:
        server.terminate()
        server.wait()


def main(argv: list[str]) -> None:
    kind = "autoindex" if "--autoindex" in argv else "pmc" if "--pmc" in argv else "s3"
    sizes = [int(a) for a in argv if not a.startswith("--")] or [100_000]
    with tempfile.TemporaryDirectory(prefix="pm-scale-") as tmp:
        for n in sizes:
            for result in measure(n, Path(tmp), kind):
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
