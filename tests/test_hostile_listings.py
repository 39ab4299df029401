"""Odd and hostile listings, end to end: the installed command against a server whose LIST
answer is canned (IIS lines, lines without a year, names with spaces and non-ASCII,
entries that try to leave DEST, links, a huge directory), a server that lies about sizes,
and a file that changes between two attempts."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_tree
from pubmed_mirror._plan import unsafe_name_reason
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import command, run

# three days ago, to the minute: an `ls -l` line shows it without a year
WHEN = (int(time.time()) - 3 * 86400) // 60 * 60
_T = time.gmtime(WHEN)


def unix_line(name: str, size: int, *, kind: str = "-") -> str:
    return f"{kind}rw-r--r--   1 ftp  ftp  {size:>9} {time.strftime('%b %e %H:%M', _T)} {name}"


def iis_line(name: str, size: int) -> str:
    return f"{time.strftime('%m-%d-%y  %I:%M%p', _T)} {size:>20,} {name}"


@pytest.fixture
def remote(tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / "remote"
    data = make_tree(root, [300_000, 120_000, 50_000], seed=11)
    files = {}
    for old, new in zip(sorted(data), ["pubmed26n0001.xml.gz", "with  two spaces.xml.gz",
                                        "café 文献.xml.gz"], strict=True):
        (root / old).rename(root / new)
        files[new] = data[old]
    return files


@pytest.mark.parametrize("style", ["iis", "unix-no-year"])
def test_odd_listing_styles_are_mirrored(tmp_path: Path, remote: dict[str, bytes],
                                         style: str) -> None:
    """IIS `dir` lines and year-less `ls -l` lines, with spaces and non-ASCII in names: every
    file arrives whole, stamped with the listed time."""
    line = iis_line if style == "iis" else unix_line
    lines = [line(name, len(data)) for name, data in remote.items()]
    dest = tmp_path / "local"
    with FaultyFTPServer(tmp_path / "remote", list_lines=["total 3", *lines]) as server:
        result = run("mirror", server.url, "--dest", str(dest))
        again = run("mirror", server.url, "--dest", str(dest), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, data in remote.items():
        assert (dest / name).read_bytes() == data
        assert (dest / name).stat().st_mtime == WHEN
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == len(remote)


def test_entries_that_try_to_leave_dest_are_refused(tmp_path: Path,
                                                    remote: dict[str, bytes]) -> None:
    """Names with separators, `..`, absolute paths, and links are skipped with a warning;
    nothing is written outside DEST."""
    good = "pubmed26n0001.xml.gz"
    lines = [unix_line(good, len(remote[good])),
             unix_line("../escape.xml.gz", 10), unix_line("/etc/passwd", 10),
             unix_line("a/../../b.xml.gz", 10), unix_line("..", 10, kind="d"),
             unix_line("win\\..\\x.xml.gz", 10),
             unix_line("pubmed26n0002.xml.gz -> /etc/shadow", 10, kind="l")]
    dest = tmp_path / "box" / "local"
    with FaultyFTPServer(tmp_path / "remote", list_lines=lines) as server:
        result = run("mirror", server.url, "--dest", str(dest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in dest.iterdir()) == [".pubmed-mirror", good]
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["local"]
    assert result.stderr.count("skipping") >= 5
    assert "skipping symlink entry 'pubmed26n0002.xml.gz'" in result.stderr
    assert server.stats.retr == {good: 1}


def test_ls_gives_the_reason_a_name_is_refused(tmp_path: Path, remote: dict[str, bytes],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`ls --json` gives each entry the reason the mirror would refuse its name (`refused`,
    null for a safe name); the table shows those names escaped, with the same reason."""
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    good = "pubmed26n0001.xml.gz"
    refused = ["../escape.xml.gz", "red\x1b[31m.xml.gz", "x.xml.gz.part", "\u202egz.xml"]
    with FaultyFTPServer(tmp_path / "remote",
                         list_lines=[unix_line(n, 10) for n in [good, *refused]]) as server:
        listed = run("ls", server.url, "--json")
        table = run("ls", server.url)
    assert listed.returncode == 0 and table.returncode == 0, listed.stderr + table.stderr
    entries = {e["name"]: e for e in map(json.loads, listed.stdout.splitlines())}
    assert entries[good]["refused"] is None
    assert entries["../escape.xml.gz"]["refused"] == "contains a path separator"
    assert {n: entries[n]["refused"] for n in refused} == {
        n: unsafe_name_reason(n) for n in refused}
    assert None not in [entries[n]["refused"] for n in refused]
    assert "\x1b[" not in table.stdout and "\u202e" not in table.stdout
    for name in refused:
        assert f"{name!r} (mirror skips it: {unsafe_name_reason(name)})" in table.stdout


@pytest.mark.parametrize("listed_delta", [-100_000, +100_000])
def test_server_that_lies_about_size(tmp_path: Path, remote: dict[str, bytes],
                                     listed_delta: int) -> None:
    """The listing says more, or less, than the file holds. The first attempt ends short, or
    overflows (that copy is thrown away); the retry asks SIZE, believes it over the listing,
    and fetches the file whole: exactly what the server has, never a truncated or padded
    copy, no leftover part."""
    name = "pubmed26n0001.xml.gz"
    data = remote[name]
    dest = tmp_path / "local"
    with FaultyFTPServer(tmp_path / "remote",
                         list_lines=[unix_line(name, len(data) + listed_delta)]) as server:
        result = run("mirror", server.url, "--dest", str(dest), "--retries", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed on the server since the listing" in result.stderr
    assert (dest / name).read_bytes() == data
    assert not (dest / (name + ".part")).exists()


def wait_for_part(part: Path, size: int, proc: subprocess.Popen[str]) -> None:
    """Until the running mirror's `part` holds `size` bytes (20 s at most)."""
    deadline = time.monotonic() + 20
    while not (part.exists() and part.stat().st_size >= size):
        assert time.monotonic() < deadline and proc.poll() is None, "no transfer seen"
        time.sleep(0.02)


@pytest.mark.parametrize("listing", ["MLSD", "LIST"])
def test_file_replaced_between_attempts_is_not_spliced(tmp_path: Path, remote: dict[str, bytes],
                                                      listing: str) -> None:
    """The first attempt stalls after 100 KB; meanwhile the server's file is replaced (same
    size, new mtime). The retry notices (SIZE/MDTM, against the listed time with MLSD, against
    when the part began with LIST) and starts again from 0: the result is all new bytes, not
    old bytes followed by new ones. --no-verify: no MD5 would catch a splice."""
    name = "pubmed26n0001.xml.gz"
    root, dest = tmp_path / "remote", tmp_path / "local"
    old_time = calendar.timegm((2026, 1, 1, 0, 0, 0))
    os.utime(root / name, (old_time, old_time))
    new = bytes(reversed(remote[name]))
    with FaultyFTPServer(root, disable_mlsd=listing == "LIST") as server:
        server.faults.add(name, Fault(kind="stall", after_bytes=100_000, stall_seconds=5))
        proc = subprocess.Popen([*command(), "mirror", server.url, "--dest", str(dest),
                                 "--include", name, "--stall-timeout", "1.5", "--no-verify"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_part(dest / (name + ".part"), 100_000, proc)
        (root / "new").write_bytes(new)
        if listing == "MLSD":  # any other second will do; with LIST, a real replacement's
            os.utime(root / "new", (old_time + 3600, old_time + 3600))  # (now) is needed
        os.replace(root / "new", root / name)
        out, err = proc.communicate(timeout=60)
        offsets = server.stats.rest_offsets[name]
    assert proc.returncode == 0, out + err
    assert offsets == [0, 0], err
    assert (dest / name).read_bytes() == new
    assert "changed on the server" in err


@pytest.mark.parametrize("listing", ["MLSD", "LIST"])
def test_file_rewritten_in_place_while_it_is_received_is_not_spliced(
        tmp_path: Path, listing: str) -> None:
    """A file with no MD5 rewritten in place on the server (same size) while it is being
    received: the bytes already in are of the old version, the rest of the new. Once every
    byte is in, SIZE/MDTM are asked again (with LIST, whose times are coarse, as the
    transfer began too): the change is seen and the file fetched again, as it is now.
    Before, the spliced file became final, exit 0, and `verify` could not tell."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    root.mkdir()
    name, old = "data.bin", os.urandom(1_200_000)
    (root / name).write_bytes(old)
    old_time = calendar.timegm((2026, 1, 1, 0, 0, 0))
    os.utime(root / name, (old_time, old_time))
    new = os.urandom(len(old))
    with FaultyFTPServer(root, rate_per_connection=300_000,
                         disable_mlsd=listing == "LIST") as server:
        proc = subprocess.Popen([*command(), "mirror", server.url, "--dest", str(dest)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for_part(dest / (name + ".part"), 300_000, proc)
        with open(root / name, "r+b") as rewritten:  # in place: the same file, new bytes
            rewritten.write(new)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert (dest / name).read_bytes() == new
    assert "changed on the server while it was received" in out + err


def test_directory_of_100000_entries(tmp_path: Path) -> None:
    """`ls --json` of a 100,000-entry directory lists every entry within a memory bound:
    the whole process peaks under 200 MB (it measured ~100 MB here)."""
    (tmp_path / "remote").mkdir()
    lines = [unix_line(f"pubmed26n{i:06d}.xml.gz", 1000 + i) for i in range(100_000)]
    with FaultyFTPServer(tmp_path / "remote", list_lines=lines) as server:
        done = subprocess.run([sys.executable, "-c", _PEAK_RSS, *command(), "ls", server.url,
                               "--json"], capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    entries = done.stdout.splitlines()
    assert len(entries) == 100_000
    assert json.loads(entries[-1])["name"] == "pubmed26n099999.xml.gz"
    peak_mb = int(done.stderr.split()[-1]) / 1024
    print(f"ls --json of 100,000 entries: peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 200


# runs the command as its only child and prints the child's peak RSS (KiB) on stderr
_PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
             "sys.exit(code)")


def test_an_mdtm_on_another_clock_than_mlsd_does_not_refetch(tmp_path: Path) -> None:
    """A server whose MDTM answers another clock than its MLSD times (an MDTM in local
    time, here a fixed one): a large file with no MD5 is fetched once, not again at every
    run as 'changed on the server' (the look before its transfer and the one after ask the
    same way: SIZE/MDTM both times)."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    root.mkdir()
    data = os.urandom(1_000_000)
    (root / "big.bin").write_bytes(data)
    with FaultyFTPServer(root, replies={"MDTM": "213 20261207123456"}) as server:
        first = run("mirror", server.url, "--dest", str(dest), "--json")
        second = run("mirror", server.url, "--dest", str(dest), "--json")
        sent = server.stats.bytes_sent["big.bin"]
    assert first.returncode == 0, first.stdout + first.stderr
    assert (dest / "big.bin").read_bytes() == data
    assert "changed on the server" not in first.stdout + first.stderr
    assert json.loads(second.stdout.splitlines()[-1])["done"] == 0
    assert sent == len(data)
