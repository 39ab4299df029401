"""pubmed-mirror side by side with curl, lftp, wget and aria2c: one command, every scenario.

    python benchmarks/run.py                  # all scenarios, a few minutes
    python benchmarks/run.py --only b,e       # some of them
    python benchmarks/run.py --quick          # smaller data, one round

It generates its data, starts its own pyftpdlib server (sendfile on, its own process) on
127.0.0.1 -- for scenario c inside a private network namespace shaped like a far,
per-connection-limited server (htb on the namespace's loopback; needs root) -- runs
each client as a whole process, alternating clients round by round (the order rotated each
round, the page cache synced before each run), and writes
benchmarks/results/RESULTS.md plus PNG plots. Every figure is a ratio or a comparison inside
one run; a missing peer is reported, not dropped silently.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1 << 20

# runs the command as its only child; prints wall seconds, CPU seconds and peak RSS (KiB)
_PROBE = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
    "stderr=subprocess.DEVNULL).returncode\n"
    "wall = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'code': code, 'wall': wall, 'cpu': u.ru_utime + u.ru_stime, "
    "'rss': u.ru_maxrss}))\n")


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)

    def add(self, title: str, lines: list[str]) -> None:
        text = "\n".join([f"## {title}", "", *lines, ""])
        print(text, flush=True)
        self.sections.append(text)


def pubmed_mirror() -> list[str]:
    exe = Path(sys.executable).parent / "pubmed-mirror"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "pubmed_mirror"]


BASELINE: dict[str, Path] = {}  # --baseline REF: that commit's src/, by REF


def baseline(ref: str, work: Path) -> str:
    """pubmed-mirror as it was at git REF (its src/ extracted and byte-compiled), runnable as
    the client `pubmed-mirror@REF`: the engine's before and after in one run."""
    src = work / "src"
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(["git", "-C", str(repo), "archive", ref, "src"],
                             capture_output=True, check=True).stdout
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    compileall.compile_dir(src, quiet=1)
    BASELINE[ref] = src
    return f"pubmed-mirror@{ref}"


def pm_argv(client: str) -> list[str]:
    """The argv that starts `client` (pubmed-mirror, or pubmed-mirror@REF)."""
    if client.startswith("pubmed-mirror@"):
        src = BASELINE[client.split("@", 1)[1]]
        return ["env", f"PYTHONPATH={src}", sys.executable, "-m", "pubmed_mirror"]
    return pubmed_mirror()


def timed(cmd: list[str], netns: str | None = None) -> Run:
    """One whole client process: wall, CPU (user + sys) and peak RSS.

    Every client starts from the same state of the page cache: what earlier runs left dirty
    is written first, outside the timing (deleting a previous client's unwritten 512 MiB
    copy was measured to slow whichever client ran next by up to ~40%)."""
    os.sync()
    probe = [sys.executable, "-c", _PROBE, *cmd]
    if netns:
        probe = ["ip", "netns", "exec", netns, *probe]
    out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(f"{cmd[0]} exited {result['code']}: {' '.join(cmd)}")
    return Run(result["wall"], result["cpu"], result["rss"] / 1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ftp_server(root: Path, *, passive: tuple[int, int] | None = None,
               netns: str | None = None, port: int | None = None) -> Iterator[str]:
    """pyftpdlib (sendfile on) in its own process; yields its URL."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port),
           "-d", str(root)]
    if passive:
        cmd += ["-r", f"{passive[0]}-{passive[1]}"]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, netns)
        yield f"ftp://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait()


def _wait_ready(port: int, netns: str | None) -> None:
    check = [sys.executable, "-c",
             f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).recv(3)"]
    if netns:
        check = ["ip", "netns", "exec", netns, *check]
    deadline = time.monotonic() + 10
    while subprocess.run(check, capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the FTP server did not start on port {port}")
        time.sleep(0.1)


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n


def peers(report: Report, *names: str) -> list[str]:
    found = []
    for name in names:
        if shutil.which(name):
            found.append(name)
        else:
            report.missing.add(name)
    return found


# -- the clients, each as the argv of one whole process ------------------------------------------


def mirror_cmd(tool: str, url: str, dest: Path, n: int) -> list[str]:
    """Mirror every file of the URL's directory into dest with n parallel transfers."""
    if tool.startswith("pubmed-mirror") and " " in tool:  # with options
        client, *options = tool.split()
        return [*mirror_cmd(client, url, dest, n), *options]
    if tool.startswith("pubmed-mirror@"):
        return [*pm_argv(tool), "mirror", url, "--dest", str(dest), "--concurrency", str(n),
                "-q"]
    if tool == "pubmed-mirror":
        return [*pubmed_mirror(), "mirror", url, "--dest", str(dest), "--concurrency", str(n),
                "-q"]
    if tool == "pubmed-mirror-no-split":
        return [*mirror_cmd("pubmed-mirror", url, dest, n), "--no-split"]
    if tool.endswith(" + md5sum"):  # a peer, then the hashing pubmed-mirror does
        peer = shlex.join(mirror_cmd(tool.split()[0], url, dest, n))
        return ["sh", "-c", f"{peer} && md5sum {shlex.quote(str(dest))}/*.xml.gz"]
    if tool == "lftp":
        return ["lftp", "-c", f"set xfer:clobber on; set net:max-retries 2; open {url}; "
                f"mirror --parallel={n} . {dest}"]
    if tool == "lftp-pget":
        return ["lftp", "-c", f"set xfer:clobber on; open {url}; "
                f"mirror --parallel={n} --use-pget-n={n} . {dest}"]
    if tool == "aria2c":
        listing = dest.parent / f"{dest.name}.urls"
        return ["aria2c", "-q", "-j", str(n), "-x", "1", "-s", "1", "--allow-overwrite=true",
                "--auto-file-renaming=false", "-d", str(dest), "-i", str(listing)]
    if tool == "aria2c-split":
        listing = dest.parent / f"{dest.name}.urls"
        return ["aria2c", "-q", "-j", str(n), "-x", str(n), "-s", str(n),
                "--min-split-size=1M", "--allow-overwrite=true",
                "--auto-file-renaming=false", "-d", str(dest), "-i", str(listing)]
    raise ValueError(tool)


def fresh(dest: Path, url: str, names: list[str]) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    (dest.parent / f"{dest.name}.urls").write_text("".join(f"{url}{n}\n" for n in names))


def check_copy(dest: Path, root: Path, names: list[str], tool: str) -> None:
    for name in names:
        if (dest / name).stat().st_size != (root / name).stat().st_size:
            raise RuntimeError(f"{tool} left a wrong size for {name}")


def mirror_rounds(tools: list[str], url: str, root: Path, names: list[str], work: Path,
                  n: int, rounds: int, netns: str | None = None) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {t: [] for t in tools}
    for round_ in range(rounds):
        for tool in rotated(tools, round_):  # the machine's noise hits every client alike
            dest = work / "".join(c if c.isalnum() or c in "@.-" else "_" for c in tool)
            fresh(dest, url, names)
            runs[tool].append(timed(mirror_cmd(tool, url, dest, n), netns))
            check_copy(dest, root, names, tool)
    return runs


def rotated(tools: list[T], round_: int) -> list[T]:
    """The clients in a different order each round: none always follows the same one."""
    shift = round_ % len(tools)
    return tools[shift:] + tools[:shift]


def median(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


# -- the scenarios --------------------------------------------------------------------------------


def scenario_a(report: Report, work: Path, quick: bool) -> None:
    """Single large file on loopback, MD5 checked and not: MB/s and CPU s/GB against curl,
    wget and lftp (the peers' MD5 is `md5sum` run after them)."""
    size = (128 if quick else 512) * MiB
    rounds = 1 if quick else 9
    root = work / "a"
    root.mkdir()
    write_random(root / "big.bin", size)
    digest = hashlib.md5((root / "big.bin").read_bytes(), usedforsecurity=False).hexdigest()
    (root / "big.bin.md5").write_text(f"MD5(big.bin)= {digest}\n")  # NCBI's format
    found = peers(report, "curl", "wget", "lftp")
    out = work / "a-out"
    got = {"curl": out / "curl.bin", "wget": out / "wget.bin", "lftp": out / "lftp.bin"}
    with ftp_server(root) as url:
        def pm(client: str, *options: str) -> list[str]:
            return [*pm_argv(client), "mirror", url, "--dest", str(out / "pm"),
                    "--concurrency", "1", "-q", *options]

        def md5sum(peer: list[str], tool: str) -> list[str]:
            return ["sh", "-c", f"{shlex.join(peer)} && md5sum {got[tool]}"]

        peer_cmds = {
            "curl": ["curl", "-s", "-o", str(got["curl"]), url + "big.bin"],
            "wget": ["wget", "-q", "-O", str(got["wget"]), url + "big.bin"],
            "lftp": ["lftp", "-c", f"set xfer:clobber on; open {url}; "
                     f"get big.bin -o {got['lftp']}"],
        }
        off = {"pubmed-mirror": pm("pubmed-mirror", "--no-verify"),
               "pubmed-mirror --no-splice": pm("pubmed-mirror", "--no-verify", "--no-splice"),
               **{f"{c} (before)": pm(c, "--no-verify") for c in baseline_clients()},
               **{t: peer_cmds[t] for t in found}}
        on = {"pubmed-mirror": pm("pubmed-mirror"),
              **{f"{c} (before)": pm(c) for c in baseline_clients()},
              **{f"{t} + md5sum": md5sum(peer_cmds[t], t) for t in found if t != "wget"}}
        cmds = {**{(k, False): v for k, v in off.items()}, **{(k, True): v for k, v in on.items()}}
        runs: dict[tuple[str, bool], list[Run]] = {k: [] for k in cmds}
        fsyncs: list[float] = []  # what making a peer's copy durable would have cost it
        startups: list[Run] = []  # Python and the imports: `pubmed-mirror --help`
        for round_ in range(rounds):
            startups.append(timed([*pubmed_mirror(), "--help"]))
            for key in rotated(list(cmds), round_):
                shutil.rmtree(out, ignore_errors=True)
                (out / "pm").mkdir(parents=True)
                runs[key].append(timed(cmds[key]))
                if key == ("curl", False):
                    fsyncs.append(fsync_seconds(got["curl"]))
    gb = size / 1e9
    lines = [f"One {size // MiB} MiB file, median of {rounds} rounds (order rotated); CPU is "
             "user + sys of the client process (Python start-up included). Targets "
             "(issue 6): >= 1.25x curl's throughput at <= 0.9x its CPU per GB. With MD5: "
             "pubmed-mirror checks the file against big.bin.md5 before its rename; a peer "
             "runs `md5sum` on its copy afterwards (one `sh -c`, timed whole).", ""]
    for md5, label in ((False, "MD5 not checked"), (True, "MD5 checked")):
        rows = {k: (size / median(r, "wall") / 1e6, median(r, "cpu") / gb)
                for (k, m), r in runs.items() if m == md5}
        base = rows.get("curl + md5sum" if md5 else "curl")
        lines += [f"**{label}**", "",
                  "| client | MB/s | (slowest-fastest run) | CPU s/GB | MB/s vs curl | "
                  "CPU/GB vs curl |", "|---|---|---|---|---|---|"]
        for tool, (mbps, cpu) in rows.items():
            vs = f"{mbps / base[0]:.2f}x | {cpu / base[1]:.2f}x" if base else "n/a | n/a"
            walls = [r.wall for r in runs[tool, md5]]
            spread = f"{size / max(walls) / 1e6:.0f}-{size / min(walls) / 1e6:.0f}"
            lines.append(f"| {tool} | {mbps:.0f} | {spread} | {cpu:.2f} | {vs} |")
        lines.append("")
    if fsyncs:
        lines += [fsync_note(fsyncs), ""]
    startup = median(startups, "wall")
    transfer = median(runs["pubmed-mirror", False], "wall") - startup
    curl = runs.get(("curl", False))
    lines += [f"Python's start-up and pubmed-mirror's imports (`pubmed-mirror --help`) "
              f"took {startup:.2f} s (median), inside each of its runs; without it, "
              f"pubmed-mirror's median (MD5 not checked) is {size / transfer / 1e6:.0f} MB/s"
              + (f" ({median(curl, 'wall') / transfer:.2f}x curl)." if curl else ".")]
    report.add("a. Single large file on loopback", lines)


def baseline_clients() -> list[str]:
    return [f"pubmed-mirror@{ref}" for ref in BASELINE]


def fsync_note(fsyncs: list[float]) -> str:
    """What making curl's copies durable took (`fsync_seconds` after each of its runs), said
    beside pubmed-mirror's figures, which include its own fsyncs."""
    return ("pubmed-mirror fsyncs each file before it becomes final (inside its time); the "
            "peers leave theirs in the page cache. An fsync of what curl wrote, right after "
            f"its run, took {statistics.median(fsyncs):.2f} s (median).")


def fsync_seconds(path: Path) -> float:
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def scenario_b(report: Report, work: Path, quick: bool) -> None:
    """24 x 32 MiB (each with its NAME.md5, as on NCBI) at concurrency 1/2/4/8 against lftp
    mirror and aria2c, MD5 checked and not."""
    count, size = (8, 16 * MiB) if quick else (24, 32 * MiB)
    rounds = 1 if quick else 2
    root = work / "b"
    root.mkdir()
    names = [f"pubmed26n{i:04d}.xml.gz" for i in range(1, count + 1)]
    for name in names:
        write_random(root / name, size)
        digest = hashlib.md5((root / name).read_bytes(), usedforsecurity=False).hexdigest()
        (root / f"{name}.md5").write_text(f"MD5({name})= {digest}\n")
    found = peers(report, "lftp", "aria2c")
    tools = ["pubmed-mirror", "pubmed-mirror --no-verify",
             *(f"{c} --no-verify" for c in baseline_clients()),
             *found, *(["lftp + md5sum"] if "lftp" in found else [])]
    table: dict[int, dict[str, float]] = {}
    with ftp_server(root) as url:
        for n in (1, 2, 4, 8):
            runs = mirror_rounds(tools, url, root, names, work / "b-out", n, rounds)
            table[n] = {t: median(r, "wall") for t, r in runs.items()}
    lines = [f"{count} x {size // MiB} MiB, wall seconds (median of {rounds} rotated "
             "runs). Target: pubmed-mirror <= lftp at the same parallelism (issue 6: at 4). "
             "pubmed-mirror and lftp list the directory (and fetch the NAME.md5 files); "
             "aria2c is handed the data files' URLs. `pubmed-mirror` checks every file's "
             "MD5 before its rename; `lftp + md5sum` hashes the files after lftp's mirror.",
             "", "| parallel | " + " | ".join(tools) + " | MD5 off: pubmed-mirror vs lftp | "
             "MD5 on: pubmed-mirror vs lftp + md5sum |", "|---" * (len(tools) + 3) + "|"]
    for n, walls in table.items():
        off = (f"{walls['pubmed-mirror --no-verify'] / walls['lftp']:.2f}x"
               if "lftp" in walls else "n/a")
        on = (f"{walls['pubmed-mirror'] / walls['lftp + md5sum']:.2f}x"
              if "lftp + md5sum" in walls else "n/a")
        cells = " | ".join(f"{walls[t]:.2f}" for t in tools)
        lines.append(f"| {n} | {cells} | {off} | {on} |")
    report.add("b. Mirror of many files at 1/2/4/8 in parallel", lines)
    plot("b_mirror_wall.png", "concurrency", "wall seconds", f"{count} x {size // MiB} MiB",
         {t: ([n for n in table], [table[n][t] for n in table]) for t in tools})


NCBI_NS = "pmbench"


@contextmanager
def shaped_link(total: str, per: str, ports: tuple[int, int]) -> Iterator[str]:
    script = Path(__file__).resolve().parents[2] / "shared" / "tools" / "ncbi-link.sh"
    subprocess.run(["ip", "netns", "del", NCBI_NS], capture_output=True, check=False)
    subprocess.run(["bash", str(script), NCBI_NS, total, per, str(ports[0]), str(ports[1])],
                   check=True, capture_output=True)
    try:
        yield NCBI_NS
    finally:
        subprocess.run(["ip", "netns", "del", NCBI_NS], check=False)


def scenario_c(report: Report, work: Path, quick: bool) -> None:
    """A far server: 6 MB/s per connection, 24 MB/s in all; throughput as a share of the cap,
    on even files and on a skewed mix (one big file left at the tail)."""
    script = Path(__file__).resolve().parents[2] / "shared" / "tools" / "ncbi-link.sh"
    if os.geteuid() != 0 or not shutil.which("tc") or not script.is_file():
        report.add("c. NCBI-like link", [f"not run: needs root, tc and {script}"])
        return
    total_mbit, per_mbit = 192, 48  # 24 MB/s and 6 MB/s
    cap = total_mbit * 1e6 / 8
    ports = (47000, 47063)  # more passive ports than connections: none may go unshaped
    found = peers(report, "lftp", "aria2c")
    # the split modes (several connections on one file) matter at the tail: pubmed-mirror
    # without its own and the peers with theirs run on the skewed mix only
    split = ["pubmed-mirror-no-split", *(f"{t}-{'pget' if t == 'lftp' else 'split'}"
                                        for t in found)]
    tools = ["pubmed-mirror", *found, *split]
    mixes = {"even: 8 x 12 MiB": [12 * MiB] * 8,
             "skewed: 1 x 48 MiB + 6 x 8 MiB": [48 * MiB] + [8 * MiB] * 6}
    if quick:
        mixes = {"even: 8 x 4 MiB": [4 * MiB] * 8}
    rounds = 1 if quick else 3
    lines = [f"Each server data connection held to {per_mbit} Mbit/s, all of them to "
             f"{total_mbit} Mbit/s (htb in a private namespace); 4 transfers in parallel "
             f"(pubmed-mirror splits the tail's large files over idle sessions unless "
             f"`--no-split`; `lftp --use-pget-n=4`, `aria2c -x 4 -s 4` split every file). "
             f"Throughput of the "
             f"whole process as a share of the total cap, median of {rounds} rotated rounds "
             "(target >= 95% for even files). `in-run`: pubmed-mirror's own summary (bytes "
             "over the run's seconds: no Python start-up), from one more run.", "",
             "| files | " + " | ".join(tools) + " | pubmed-mirror in-run |",
             "|---" * (len(tools) + 2) + "|"]
    with shaped_link(f"{total_mbit}mbit", f"{per_mbit}mbit", ports) as ns:
        for label, sizes in mixes.items():
            root = work / f"c-{len(sizes)}-{sizes[0]}"
            root.mkdir()
            names = [f"pubmed26n{i:04d}.xml.gz" for i in range(1, len(sizes) + 1)]
            for name, size in zip(names, sizes, strict=True):
                write_random(root / name, size)
            with ftp_server(root, passive=ports, netns=ns) as url:
                here = [t for t in tools if label.startswith("skewed") or t not in split]
                runs = mirror_rounds(here, url, root, names, work / "c-out", 4, rounds, ns)
                in_run = _in_run_rate(url, work / "c-out" / "in-run", ns) / cap
            share = {t: sum(sizes) / median(r, "wall") / cap for t, r in runs.items()}
            lines.append(f"| {label} | "
                         + " | ".join(_share(share[t]) if t in share else "" for t in tools)
                         + f" | {_share(in_run)} |")
    report.add("c. NCBI-like link", lines)


def _in_run_rate(url: str, dest: Path, netns: str) -> float:
    """Bytes/s by pubmed-mirror's own --json summary (from its listing to its end)."""
    shutil.rmtree(dest, ignore_errors=True)
    done = subprocess.run(["ip", "netns", "exec", netns, *pubmed_mirror(), "mirror", url,
                           "--dest", str(dest), "--json"], capture_output=True, text=True,
                          check=True)
    summary = json.loads(done.stdout.splitlines()[-1])
    return float(summary["bytes_received"]) / float(summary["seconds"])


def _share(value: float) -> str:
    # above the cap, some of that client's connections escaped the shaping: not a result
    return f"{value:.0%}" if value <= 1.02 else f"({value:.0%}: over the cap, invalid)"


def scenario_d(report: Report, work: Path, quick: bool) -> None:
    """2,000 small files: per-file overhead against lftp."""
    count = 300 if quick else 2000
    root = work / "d"
    root.mkdir()
    names = [f"small{i:05d}.xml.gz" for i in range(count)]
    for name in names:
        (root / name).write_bytes(os.urandom(2048))
    tools = ["pubmed-mirror", *peers(report, "lftp")]
    with ftp_server(root) as url:
        runs = {n: mirror_rounds(tools, url, root, names, work / "d-out", n, 1) for n in (1, 4)}
    lines = [f"{count} files of 2 KiB: files per second (whole run, listing included). "
             "pubmed-mirror fsyncs each file before its rename; lftp does not.", "",
             "| parallel | " + " | ".join(tools) + " |", "|---" * (len(tools) + 1) + "|"]
    for n, by_tool in runs.items():
        lines.append(f"| {n} | " + " | ".join(f"{count / median(by_tool[t], 'wall'):.0f}"
                                               for t in tools) + " |")
    report.add("d. Many small files", lines)


def scenario_e(report: Report, work: Path, quick: bool) -> None:
    """--rate-limit accuracy: measured / configured at several caps."""
    root = work / "e"
    root.mkdir()
    caps = [1 * MiB, 8 * MiB] if quick else [512 << 10, 2 * MiB, 8 * MiB, 32 * MiB]
    lines = ["One file of 4 s worth at each cap. `transfer`: the bytes of its progress events "
             "but the last over the time from the first to the last (stamped as the lines "
             "arrive from `--json`); `whole file`: its bytes over its time from start to "
             "`file_done` (which includes the stitch of a split file, the MD5 and the "
             "fsync). Target: within +-3%.",
             "", "| cap | transfer | transfer / cap | whole file | whole file / cap |",
             "|---|---|---|---|---|"]
    points: tuple[list[float], list[float]] = ([], [])
    with ftp_server(root) as url:
        for cap in caps:
            name = f"cap{cap}.bin"
            write_random(root / name, cap * 4)
            dest = work / "e-out"
            shutil.rmtree(dest, ignore_errors=True)
            stamped = json_lines([*pubmed_mirror(), "mirror", url, "--dest", str(dest),
                                  "--include", name, "--rate-limit", str(cap), "--json"])
            progress = [(t, e["delta"]) for t, e in stamped if e["event"] == "file_progress"]
            # each chunk's tokens are waited for after it arrives: between the first and
            # the last event, all but the last chunk were paid for
            transfer = (sum(d for _, d in progress[:-1])
                        / (progress[-1][0] - progress[0][0]))
            done = next(e for _, e in stamped if e["event"] == "file_done")
            whole = done["received"] / done["seconds"]
            lines.append(f"| {cap / MiB:g} MiB/s | {transfer / MiB:.3f} MiB/s | "
                         f"{transfer / cap:.3f} | {whole / MiB:.3f} MiB/s | {whole / cap:.3f} |")
            points[0].append(cap / MiB)
            points[1].append(transfer / MiB)
    report.add("e. Rate-limit accuracy", lines)
    plot("e_rate_limit.png", "configured MiB/s", "measured MiB/s", "--rate-limit",
         {"measured": points, "configured": (points[0], points[0])})


FAR_RTT = 0.2  # seconds: a far client of us-east-1
FAR_BUCKET = "pm-bench"

# moto's S3 application under waitress (HTTP/1.1 keep-alive; moto_server's own Werkzeug
# server answers every request with `Connection: close`, which would cost each object of
# every client a new connection, one more round trip on a far link)
_S3_SERVER = (
    "import os, sys\n"
    "os.environ['MOTO_PORT'] = sys.argv[1]\n"
    "from moto.server import DomainDispatcherApplication, create_backend_app\n"
    "from waitress import serve\n"
    "serve(DomainDispatcherApplication(create_backend_app), host='127.0.0.1',\n"
    "      port=int(sys.argv[1]), threads=8, connection_limit=256, _quiet=True)\n")


@contextmanager
def far_s3(work: Path, objects: dict[str, bytes]) -> Iterator[str]:
    """An S3 server holding `objects` (keys) in a public bucket, behind a far link of
    FAR_RTT (benchmarks/farlink.py, its own process); yields the far endpoint's URL."""
    port, far = free_port(), free_port()
    ready = work / "farlink.ready"
    server = subprocess.Popen([sys.executable, "-c", _S3_SERVER, str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    relay = subprocess.Popen([sys.executable, str(Path(__file__).with_name("farlink.py")),
                              "--listen", str(far), "--target", str(port),
                              "--rtt-ms", str(FAR_RTT * 1000), "--ready", str(ready)])
    try:
        _fill_bucket(f"http://127.0.0.1:{port}", objects)
        while not ready.exists():
            if relay.poll() is not None:
                raise RuntimeError("the far-link relay did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{far}"
    finally:
        for proc in (relay, server):
            proc.terminate()
            proc.wait()


def _fill_bucket(endpoint: str, objects: dict[str, bytes]) -> None:
    """The bucket, readable by anyone (policy), filled over the near side."""
    from concurrent.futures import ThreadPoolExecutor

    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="bench", aws_secret_access_key="bench")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket=FAR_BUCKET)
            break
        except Exception:  # not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client.put_bucket_policy(Bucket=FAR_BUCKET, Policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{FAR_BUCKET}/*"}]}))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=FAR_BUCKET, Key=kv[0], Body=kv[1]),
                      objects.items()))


def s3_cmd(tool: str, endpoint: str, prefix: str, dest: Path, n: int, work: Path) -> list[str]:
    """Copy every object under s3://FAR_BUCKET/prefix into dest over n connections."""
    url = f"s3://{FAR_BUCKET}/{prefix}"
    if tool.startswith("pubmed-mirror"):  # (pubmed-mirror@REF: --baseline REF)
        return [*pm_argv(tool), "mirror", url, "--s3-endpoint", endpoint, "--dest",
                str(dest), "--concurrency", str(n), "-q"]
    if tool == "rclone":  # it refuses to start with AWS_CA_BUNDLE set
        return ["env", "-u", "AWS_CA_BUNDLE", "rclone", "copy", "-q", "--s3-provider", "Other",
                "--s3-endpoint", endpoint, "--s3-env-auth=false", f":s3:{FAR_BUCKET}/{prefix}",
                str(dest), "--transfers", str(n), "--checkers", str(n)]
    if tool == "aws":
        config = work / "aws-config"
        config.write_text(f"[default]\nregion = us-east-1\ns3 =\n"
                          f"  max_concurrent_requests = {n}\n")
        return ["env", f"AWS_CONFIG_FILE={config}", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
                "AWS_EC2_METADATA_DISABLED=true", "aws", "s3", "sync", "--only-show-errors",
                url, str(dest), "--endpoint-url", endpoint, "--no-sign-request"]
    raise ValueError(tool)


def scenario_s(report: Report, work: Path, quick: bool) -> None:
    """Small objects on a far link: 2,000 x 4 KiB from S3 at 200 ms RTT, 32 connections."""
    title = "s. Small S3 objects on a far link"
    missing = [m for m in ("moto", "waitress", "botocore")
               if importlib.util.find_spec(m) is None]
    if missing:
        report.add(title, [f"not run: needs {', '.join(missing)} (pip install '.[bench]')"])
        return
    count, size, n = (300 if quick else 2000), 4096, 32
    rounds = 1 if quick else 3
    objects = {f"far/o{i:05d}.bin": os.urandom(size) for i in range(count)}
    tools = ["pubmed-mirror", *baseline_clients(), *peers(report, "rclone", "aws")]
    runs: dict[str, list[Run]] = {t: [] for t in tools}
    with far_s3(work, objects) as endpoint:
        for round_ in range(rounds):
            for tool in rotated(tools, round_):
                dest = work / f"s-{tool}"
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                runs[tool].append(timed(s3_cmd(tool, endpoint, "far/", dest, n, work)))
                for key, data in objects.items():
                    if (dest / key.removeprefix("far/")).read_bytes() != data:
                        raise RuntimeError(f"{tool} left a wrong copy of {key}")
        in_run = _in_run_objects(endpoint, work / "s-in-run", n)
    ideal, target = n / FAR_RTT, 0.8 * n / FAR_RTT
    rate = {t: count / median(r, "wall") for t, r in runs.items()}
    lines = [f"{count:,} objects of {size // 1024} KiB in a public bucket (moto's S3 "
             f"application under waitress, keep-alive), behind a relay adding "
             f"{FAR_RTT * 1000:.0f} ms of round trip (benchmarks/farlink.py: a new "
             f"connection costs one more), {n} connections each (`--concurrency {n}`, "
             f"rclone `--transfers {n} --checkers {n}`, awscli `max_concurrent_requests "
             f"{n}`). Objects/s of the whole process (start-up and listing included), median "
             f"of {rounds} rotated rounds; CPU seconds (user + sys) of the client. Ideal "
             f"(one GET per object, {n} at a time): {ideal:.0f}/s; target >= {target:.0f}/s "
             f"and faster than both peers. `in-run`: pubmed-mirror's own summary (objects "
             "over its run's seconds: no Python start-up), from one more run. `rounds`: "
             "each round's objects/s, in the order run.", "",
             "| client | objects/s | vs pubmed-mirror | CPU s | target | rounds |",
             "|---|---|---|---|---|---|"]
    for tool in tools:
        each = " / ".join(f"{count / r.wall:.0f}" for r in runs[tool])
        lines.append(f"| {tool} | {rate[tool]:.0f} | "
                     f"{rate[tool] / rate['pubmed-mirror']:.2f}x | "
                     f"{median(runs[tool], 'cpu'):.2f} | "
                     f"{'met' if rate[tool] >= target else 'missed'} | {each} |")
    lines.append(f"| pubmed-mirror in-run | {in_run:.0f} | | | | |")
    report.add(title, lines)


def _in_run_objects(endpoint: str, dest: Path, n: int) -> float:
    """Objects/s by pubmed-mirror's own --json summary (from its listing to its end)."""
    shutil.rmtree(dest, ignore_errors=True)
    done = subprocess.run([*pubmed_mirror(), "mirror", f"s3://{FAR_BUCKET}/far/",
                           "--s3-endpoint", endpoint, "--dest", str(dest), "--concurrency",
                           str(n), "--json"], capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout.splitlines()[-1])
    return float(summary["done"]) / float(summary["seconds"])


def json_lines(cmd: list[str]) -> list[tuple[float, dict[str, Any]]]:
    """The JSON objects a command prints, each with the monotonic time its line arrived."""
    stamped = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            stamped.append((time.monotonic(), json.loads(line)))
    if child.returncode != 0:
        raise RuntimeError(f"exited {child.returncode}: {' '.join(cmd)}")
    return stamped


def scenario_h(report: Report, work: Path, quick: bool) -> None:
    """Large files over HTTP and HTTPS from nginx (TLS with a self-signed certificate):
    MB/s and CPU s/GB against curl and wget, for one file, for eight in one run and for
    four 1 GiB files in one run."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from webservers import make_certificate, missing  # type: ignore[import-not-found]

    if missing("nginx"):
        report.add("h. HTTP and HTTPS", ["not run: nginx or openssl missing "
                                         "(.ci/install-webservers installs them)"])
        return
    size = (128 if quick else 512) * MiB
    rounds = 1 if quick else 5
    certs = work / "certs"
    certs.mkdir()
    certs.chmod(0o755)
    tls = make_certificate(certs)
    found = peers(report, "curl", "wget")
    one = _h_files(report, work / "h1", {"big.bin": size}, rounds, found, tls, baseline=True)
    lines = [f"One {size // MiB} MiB file from nginx on 127.0.0.1 (as tests/webservers.py "
             "starts it: nginx's default, no sendfile), "
             f"median of {rounds} rotated rounds, MD5 not checked (no .md5 served); CPU is "
             "user + sys of the client process. pubmed-mirror splices plain HTTP bodies and "
             "decrypts HTTPS ones into the part (recv_into), each on a connection of its "
             "own. `nothing to transfer`: the same command on a DEST that has the file "
             "(start-up, listing, exit), rotated with the others.", "", *one]
    report.add("h. HTTP and HTTPS, one large file", lines)
    eight = _h_files(report, work / "h8", {f"part{i}.bin": size // 8 for i in range(8)},
                     rounds, found, tls, baseline=False)
    report.add("h8. HTTP and HTTPS, eight large files in one run", [
        f"The same {size // MiB} MiB as eight files of {size // 8 // MiB} MiB, fetched one "
        "at a time by one process each: pubmed-mirror `--concurrency 1` (one connection, "
        "no split), curl and wget given the eight URLs in one command (one kept-alive "
        "connection). A process's start-up is paid once for eight files, as in a "
        "mirror run of many files. Otherwise as h.", "", *eight])
    big = (64 if quick else 1024) * MiB
    long = _h_files(report, work / "hL", {f"part{i}.bin": big for i in range(4)},
                    rounds, found, tls, baseline=False)
    report.add("hL. HTTP and HTTPS, four 1 GiB files in one run", [
        f"Four files of {big // MiB} MiB in one run, as h8 ({4 * big // MiB} MiB in all): "
        "long enough that the transfer, not a process's start-up, sets the figure, as in "
        "a baseline run of 40 GB. Otherwise as h.", "", *long])


def _h_files(report: Report, source: Path, files: dict[str, int], rounds: int,
             found: list[str], tls: tuple[Path, Path], *, baseline: bool) -> list[str]:
    """Scenario h's table for `files` (name: size) served by nginx over http and https."""
    from webservers import nginx, served_copy  # type: ignore[import-not-found]

    cert, _ = tls
    source.mkdir()
    for name, size in files.items():
        write_random(source / name, size)
    total = sum(files.values())
    out = source.parent / f"{source.name}-out"
    lines = ["| scheme | client | MB/s | CPU s/GB | MB/s vs curl | CPU/GB vs curl |",
             "|---|---|---|---|---|---|"]
    fixed: list[str] = []
    fsyncs: list[float] = []  # what making curl's copies durable would have cost it
    with served_copy(source) as base:
        for scheme in ("http", "https"):
            with nginx(base, tls=tls if scheme == "https" else None) as port:
                url = f"{scheme}://127.0.0.1:{port}/pubmed/"
                trust_pm = ["--ca-file", str(cert)] if scheme == "https" else []
                warm = source.parent / f"{source.name}-warm-{scheme}"
                subprocess.run([*mirror_cmd("pubmed-mirror", url, warm, 1), *trust_pm],
                               check=True)
                urls = [url + name for name in files]
                clients = ["pubmed-mirror", *(baseline_clients() if baseline else [])]
                cmds = {
                    **{f"{c}{' (before)' if '@' in c else ''}":
                       [*mirror_cmd(c, url, out / "pm", 1), *trust_pm] for c in clients},
                    "nothing to transfer": [*mirror_cmd("pubmed-mirror", url, warm, 1),
                                            *trust_pm],
                    "curl": ["curl", "-s",
                             *(["--cacert", str(cert)] if scheme == "https" else []),
                             *[a for u in urls for a in ("-o", str(out / u.rsplit("/")[-1]),
                                                         u)]],
                    "wget": ["wget", "-q", "-P", str(out),
                             *([f"--ca-certificate={cert}"] if scheme == "https" else []),
                             *urls],
                }
                if scheme == "http":
                    cmds["pubmed-mirror --no-splice"] = [*cmds["pubmed-mirror"], "--no-splice"]
                tools = [t for t in cmds if t not in ("curl", "wget") or t in found]
                runs: dict[str, list[Run]] = {t: [] for t in tools}
                for round_ in range(rounds):
                    for tool in rotated(tools, round_):
                        shutil.rmtree(out, ignore_errors=True)
                        (out / "pm").mkdir(parents=True)
                        runs[tool].append(timed(cmds[tool]))
                        if tool != "nothing to transfer":
                            _check_copies(out, source, files, tool)
                        if tool == "curl":
                            fsyncs.append(sum(fsync_seconds(out / name) for name in files))
            gb = total / 1e9
            idle = runs.pop("nothing to transfer")
            fixed.append(f"{scheme}: {median(idle, 'wall'):.2f} s wall, "
                         f"{median(idle, 'cpu'):.2f} s CPU")
            rows = {t: (total / median(r, "wall") / 1e6, median(r, "cpu") / gb)
                    for t, r in runs.items()}
            base_row = rows.get("curl")
            for tool, (mbps, cpu) in rows.items():
                vs = (f"{mbps / base_row[0]:.2f}x | {cpu / base_row[1]:.2f}x" if base_row
                      else "n/a | n/a")
                lines.append(f"| {scheme} | {tool} | {mbps:.0f} | {cpu:.2f} | {vs} |")
    durable = f" {fsync_note(fsyncs)}" if fsyncs else ""
    return [*lines, "", "pubmed-mirror with nothing to transfer (median): "
            + "; ".join(fixed) + "." + durable]


def _check_copies(out: Path, source: Path, files: dict[str, int], tool: str) -> None:
    """Each client's copies are the served files (sizes, and the first file's bytes)."""
    where = out / "pm" if tool.startswith("pubmed-mirror") else out
    for name, size in files.items():
        if (where / name).stat().st_size != size:
            raise RuntimeError(f"{tool} left a wrong copy of {name}")
    first = next(iter(files))
    if (where / first).read_bytes() != (source / first).read_bytes():
        raise RuntimeError(f"{tool} left a wrong copy of {first}")


def scenario_f(report: Report, work: Path, quick: bool) -> None:
    """Resume efficiency: interrupt at ~50%, rerun; bytes received beyond the file's size."""
    size = (64 if quick else 256) * MiB
    root = work / "f"
    root.mkdir()
    write_random(root / "big.bin", size)
    dest = work / "f-out"
    with ftp_server(root) as url:
        proc = subprocess.Popen([*pubmed_mirror(), "mirror", url, "--dest", str(dest),
                                 "--rate-limit", str(size // 6), "-q"])
        while kept_bytes(dest, "big.bin") < size // 2:
            if proc.poll() is not None:
                raise RuntimeError("the first run ended before 50%")
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        kept = kept_bytes(dest, "big.bin")
        done = subprocess.run([*pubmed_mirror(), "mirror", url, "--dest", str(dest), "--json"],
                              capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout.splitlines()[-1])
    extra = kept + summary["bytes_received"] - size
    report.add("f. Resume efficiency", [
        f"One {size // MiB} MiB file, SIGINT at ~50%, then a rerun. With 4 sessions and one "
        "file, the file is split at once: what is kept is NAME.part and its segments.", "",
        "| kept (part + segments) | received by the rerun | bytes beyond the file's size |",
        "|---|---|---|",
        f"| {kept:,} | {summary['bytes_received']:,} | {extra:,} |"])


def scenario_i(report: Report, work: Path, quick: bool) -> None:
    """Scale (benchmarks/scale.py): peak RSS and phases over a generated ListObjectsV2
    stream of 1,000,000 objects (100,000 with --quick)."""
    from scale import measure  # (this directory: benchmarks/scale.py runs alone too)

    n = 100_000 if quick else 1_000_000
    lines = [f"{n:,} PMC-shaped objects listed as a generated ListObjectsV2 stream (pages of "
             "1,000 keys, tests/bigbucket.py) through `s3://bucket/pmc/ --s3-endpoint URL`; "
             "a fresh DEST, and a DEST whose manifest vouches for every object.", "",
             "| case | peak RSS | wall | listing | comparison | compared objects/s |",
             "|---|---|---|---|---|---|"]
    for r in measure(n, work):
        lines.append(f"| {r['case']} | {r['rss_kib'] / 1024:.0f} MB | {r['wall']:.1f} s | "
                     f"{r.get('listing_s', '?')} s | {r.get('comparison_s', '?')} s | "
                     f"{r.get('comparison_per_s', '?'):,} |")
    report.add("i. Scale", lines)


def kept_bytes(dest: Path, name: str) -> int:
    """What a run has kept of NAME: its part and its segments, wherever the library keeps
    them (src/pubmed_mirror/_layout.py names them)."""
    from pubmed_mirror._layout import part_path, segment_files

    part = part_path(dest / name)
    paths = [part, *(path for _, path in segment_files(part))]
    total = 0
    for path in paths:
        with contextlib.suppress(FileNotFoundError):  # stitched and removed meanwhile
            total += path.stat().st_size
    return total


def scenario_g(report: Report, work: Path, quick: bool) -> None:
    """Peak RSS of a whole mirror against the number of files."""
    counts = [100, 1000] if quick else [100, 1000, 5000, 20000]
    lines = ["Files of 100 bytes, `mirror --concurrency 4`, peak RSS of the whole process. "
             "Target: < 100 MB and flat.", "", "| files | peak RSS | wall |", "|---|---|---|"]
    # (ru_maxrss is in KiB: the figures are MiB)
    points: tuple[list[float], list[float]] = ([], [])
    for count in counts:
        root = work / f"g{count}"
        root.mkdir()
        for i in range(count):
            (root / f"f{i:06d}.xml.gz").write_bytes(b"x" * 100)
        with ftp_server(root) as url:
            run = timed(mirror_cmd("pubmed-mirror", url, work / f"g{count}-out", 4))
        lines.append(f"| {count:,} | {run.rss_mb:.0f} MiB | {run.wall:.1f} s |")
        points[0].append(count)
        points[1].append(run.rss_mb)
        shutil.rmtree(root)
    report.add("g. Memory against file count", lines)
    plot("g_memory.png", "files", "peak RSS (MiB)", "pubmed-mirror mirror", {"RSS": points})


def plot(name: str, xlabel: str, ylabel: str, title: str,
         series: dict[str, tuple[list[float], list[float]]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib missing (pip install '.[bench]'): {name} not drawn")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / name, dpi=100)
    plt.close(fig)


def compile_bytecode() -> None:
    """Byte-compile pubmed-mirror as pip does when it installs a wheel: an editable install
    under PYTHONDONTWRITEBYTECODE (set on this project's machines) would otherwise compile
    every module at every start (~50 ms measured)."""
    spec = importlib.util.find_spec("pubmed_mirror")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


SCENARIOS: dict[str, Callable[[Report, Path, bool], None]] = {
    "a": scenario_a, "b": scenario_b, "c": scenario_c, "d": scenario_d, "e": scenario_e,
    "f": scenario_f, "g": scenario_g, "h": scenario_h, "i": scenario_i, "s": scenario_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="e.g. a,b,e")
    parser.add_argument("--quick", action="store_true", help="smaller data, one round")
    parser.add_argument("--baseline", metavar="REF", action="append", default=[],
                        help="also run pubmed-mirror as of git REF in scenarios a, b, h and s")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; "
                     f"choose from {', '.join(SCENARIOS)}")
    report = Report()
    started = time.time()
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="pm-bench-baseline-") as old:
        for ref in args.baseline:
            baseline(ref, Path(old) / ref)
        for key in chosen:
            with tempfile.TemporaryDirectory(prefix=f"pm-bench-{key}-") as tmp:
                SCENARIOS[key](report, Path(tmp), args.quick)
    header = [f"# Benchmarks ({time.strftime('%Y-%m-%d', time.gmtime(started))}, "
              f"{os.cpu_count()} cores{', quick' if args.quick else ''})", "",
              *([f"`pubmed-mirror@REF`: the code of git {', '.join(args.baseline)}, run "
                 "beside the current one.", ""] if args.baseline else []),
              "Peers missing on this machine: " + (", ".join(sorted(report.missing)) or "none"),
              ""]
    RESULTS.mkdir(exist_ok=True)
    # RESULTS.md is a whole run's; a part of one, or a quick one, is written beside it
    name = ("RESULTS.md" if chosen == list(SCENARIOS) and not args.quick else
            f"RESULTS-{'quick-' if args.quick else ''}{''.join(chosen)}.md")
    (RESULTS / name).write_text("\n".join(header + report.sections))
    print(f"written: {RESULTS / name}")


if __name__ == "__main__":
    main()
