"""Single large file on loopback: pubmed-mirror against curl (and lftp when installed).

Whole processes are timed alternately in one run, against one pyftpdlib server (sendfile on)
running in its own process. Prints and writes a markdown table of medians and ratios to curl:
throughput (MB/s) and client CPU seconds per GB (user + sys of the client process).

    python benchmarks/single_stream.py [--size-mib 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def clients(url: str, name: str, out: Path) -> dict[str, tuple[list[str], Path]]:
    found: dict[str, tuple[list[str], Path]] = {}
    if shutil.which("curl"):
        found["curl"] = (["curl", "-s", "-o", str(out / "curl.bin"), url + name],
                         out / "curl.bin")
    else:
        print("peer missing: curl (apt-get install curl)")
    if shutil.which("lftp"):
        lftp_dir = out / "lftp"
        lftp_dir.mkdir(exist_ok=True)
        found["lftp"] = (["lftp", "-c", f"set xfer:clobber on; open {url}; "
                          f"get {name} -o {lftp_dir / name}"], lftp_dir / name)
    else:
        print("peer missing: lftp (apt-get install lftp)")
    exe = shutil.which("pubmed-mirror") or ""
    cmd = [exe] if exe else [sys.executable, "-m", "pubmed_mirror"]
    pm_dir = out / "pm"
    found["pubmed-mirror"] = ([*cmd, "mirror", url, "--dest", str(pm_dir), "--include", name,
                               "--concurrency", "1"], pm_dir / name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "srv", Path(tmp) / "out"
        root.mkdir()
        out.mkdir()
        name = "big.bin"
        with (root / name).open("wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-d",
             str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            runs = measure(clients(f"ftp://127.0.0.1:{port}/", name, out), size, args.rounds)
        finally:
            server.terminate()
            server.wait()
    report(runs, size, args.rounds)


def measure(found: dict[str, tuple[list[str], Path]], size: int,
            rounds: int) -> dict[str, list[tuple[float, float]]]:
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in found}
    for _ in range(rounds):
        for label, (cmd, path) in found.items():  # alternate: noise hits every client alike
            path.unlink(missing_ok=True)
            runs[label].append(timed(cmd))
            assert path.stat().st_size == size, f"{label} wrote a wrong size"
            path.unlink()
    return runs


def report(runs: dict[str, list[tuple[float, float]]], size: int, rounds: int) -> None:
    gb = size / 1e9
    rows = {}
    for label, samples in runs.items():
        wall = statistics.median(w for w, _ in samples)
        cpu = statistics.median(c for _, c in samples)
        rows[label] = (size / wall / 1e6, cpu / gb)
    base = rows.get("curl")
    lines = [f"Single stream, {size >> 20} MiB on loopback, median of {rounds} alternating runs "
             f"(pyftpdlib server with sendfile, 2 cores shared)", "",
             "| client | MB/s | CPU s/GB | throughput vs curl | CPU/GB vs curl |",
             "|---|---|---|---|---|"]
    for label, (mbps, cpu_gb) in rows.items():
        vs = f"{mbps / base[0]:.2f}x | {cpu_gb / base[1]:.2f}x" if base else "n/a | n/a"
        lines.append(f"| {label} | {mbps:.0f} | {cpu_gb:.2f} | {vs} |")
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "single_stream.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
