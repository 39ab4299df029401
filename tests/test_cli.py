"""The installed `pubmed-mirror` command, run as a subprocess against local servers."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import assert_mirrored
from pubmed_mirror.testing import Fault, FaultyFTPServer

Tree = tuple[Path, dict[str, bytes]]
BIG = "pubmed26n0006.xml.gz"


def command() -> list[str]:
    """The installed command of the interpreter running the tests (not whichever
    `pubmed-mirror` comes first on PATH, which may be another install)."""
    exe = Path(sys.executable).parent / "pubmed-mirror"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "pubmed_mirror"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PUBMED_MIRROR_PASSWORD"}
    return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_mirror_command_happy_path(ftpd: FaultyFTPServer, tree: Tree, dest: Path) -> None:
    """Exit 0, a line per file, a summary, byte-identical files."""
    result = run("mirror", ftpd.url, "--dest", str(dest), "--concurrency", "3")
    assert result.returncode == 0, result.stderr
    assert_mirrored(dest, tree[1])
    lines = result.stdout.splitlines()
    assert sorted(line.split()[1] for line in lines if line.startswith("done ")) == sorted(tree[1])
    assert "summary" in result.stdout and "retries" in result.stdout


def test_failed_file_exits_1_and_names_it(ftpd: FaultyFTPServer, dest: Path) -> None:
    """A file refused with 550 makes the run exit 1, naming the file and the reply."""
    ftpd.faults.add(BIG, Fault(kind="reply", reply="550 Access denied"))
    result = run("mirror", ftpd.url, "--dest", str(dest), "--retries", "1")
    assert result.returncode == 1
    assert f"FAILED  {BIG}" in result.stdout and "550 Access denied" in result.stdout
    assert not (dest / BIG).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate-limit", "fast"], "invalid rate"),
        (["--rate-limit", "0"], "invalid rate"),
        (["--concurrency", "0"], "must be at least 1"),
        (["--include", "[abc"], "unclosed '['"),
        (["--exclude", "a//b"], "invalid glob"),
        (["--max-depth", "-1"], "0 or more"),
        (["--stall-timeout", "-3"], "positive number of seconds"),
        (["--command-rate", "0"], "positive number of commands per second"),
        (["--max-files", "x"], "whole number"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_options_exit_2_before_network(dest: Path, args: list[str], message: str) -> None:
    """Each malformed option is one clear error line and exit 2, with no connection made."""
    with socket.socket() as listener:  # a server that would notice any connection
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"ftp://127.0.0.1:{listener.getsockname()[1]}/"
        result = run("mirror", url, "--dest", str(dest), *args)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("url", ["gopher://example.org/x/", "ftp://u:p@h/x/", "ftp://h:0x/",
                                 "https://u@h/x/", "http://h/x/?q"])
def test_bad_url_exits_2(dest: Path, url: str) -> None:
    """A malformed, password-bearing or unsupported URL is refused with exit 2."""
    result = run("mirror", url, "--dest", str(dest))
    assert result.returncode == 2 and "error" in result.stderr


@pytest.mark.parametrize("args", [
    ["http://300:9000/x/"], ["ftp://1.2.3/x/"], ["http://0x7f.1:8/x/"],
    ["http://127.0.0.1:0/x/"], ["ftp://127.0.0.1:0/x/"], ["https://[::1]:0/x/"],
    ["s3://bucket/x/", "--s3-endpoint", "http://300:9000"],
    ["s3://bucket/x/", "--s3-endpoint", "http://999.1.1.1"],
    ["s3://bucket/x/", "--s3-endpoint", "http://127.0.0.1:0"],
    ["https://127.0.0.1:9/x/", "--proxy", "http://1.2.3:8"], ["http://[fe80::1%25lo]:8/x/"],
])
def test_an_address_no_url_parser_agrees_on_exits_2(dest: Path, args: list[str]) -> None:
    """A host that reads as an IPv4 address but is not one (aiohttp failed with a traceback
    on `300`; `0x7f.1` reached 127.0.0.1), or a port 0 (taken for "none": port 80 or 21
    was connected to), is one error line and exit 2, before any I/O."""
    result = run("mirror", *args, "--dest", str(dest), "--json")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "error" in result.stderr
    assert not dest.exists()


def test_unwritable_dest_exits_2(ftpd: FaultyFTPServer, tmp_path: Path) -> None:
    """A DEST that cannot be created is refused before any connection."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("mirror", ftpd.url, "--dest", str(blocker / "sub"))
    assert result.returncode == 2 and "not writable" in result.stderr
    assert ftpd.stats.connections == 0


def test_dest_too_deep_for_the_manifest_exits_2(ftpd: FaultyFTPServer, tree: Tree,
                                                tmp_path: Path) -> None:
    """A DEST whose manifest's path SQLite cannot open (over 504 bytes) is refused before
    any connection, in one line, nothing made; one at the limit is mirrored."""
    def deep(size: int) -> Path:  # a DEST whose manifest's full path is `size` bytes
        base = tmp_path.resolve()
        tail = size - len(os.fsencode(base)) - len("/.pubmed-mirror/manifest.sqlite")
        parts = []
        while tail > 0:  # "/" and a name of up to 200 bytes at a time, never 1 byte left
            size_of = min(200, tail - 1)
            size_of -= tail - size_of - 1 == 1
            parts.append("d" * size_of)
            tail -= size_of + 1
        dest = base.joinpath(*parts)
        assert len(os.fsencode(dest / ".pubmed-mirror" / "manifest.sqlite")) == size
        return dest

    over = run("mirror", ftpd.url, "--dest", str(deep(505)))
    assert over.returncode == 2, over.stderr
    assert "too long a path" in over.stderr and len(over.stderr.splitlines()) == 1
    assert ftpd.stats.connections == 0 and not deep(505).exists()
    at = run("mirror", ftpd.url, "--dest", str(deep(504)))
    assert at.returncode == 0, at.stderr
    assert_mirrored(deep(504), tree[1])


def test_max_delete_without_delete_is_said_to_do_nothing(ftpd: FaultyFTPServer, tree: Tree,
                                                          dest: Path) -> None:
    """--max-delete without --delete deletes nothing, and says it has no effect (it was
    silently ignored); the run goes on."""
    result = run("mirror", ftpd.url, "--dest", str(dest), "--max-delete", "3")
    assert result.returncode == 0, result.stderr
    assert "--max-delete has no effect without --delete" in result.stderr
    assert_mirrored(dest, tree[1])


def test_refused_port_exits_1_quickly(dest: Path) -> None:
    """Nothing listening: one line naming the address, exit 1, no retry storm."""
    port = free_port()
    start = time.monotonic()
    result = run("mirror", f"ftp://127.0.0.1:{port}/", "--dest", str(dest))
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 15


def test_ctrl_c_while_the_package_loads_is_one_line_and_130(tmp_path: Path) -> None:
    """Ctrl-C in the command's first ~0.3 s (its imports: ssl is mapped early among them)
    ends it as one during a run does: exit 130, one line, no traceback; DEST untouched.
    (`python -m pubmed_mirror` loads the package before any code of ours can catch it.)"""
    if len(command()) > 1:
        pytest.skip("no installed pubmed-mirror script beside this interpreter")
    dest = tmp_path / "dest"
    proc = subprocess.Popen([*command(), "mirror", "ftp://127.0.0.1:9/", "--dest", str(dest)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while "_ssl" not in Path(f"/proc/{proc.pid}/maps").read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "never loaded ssl"
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "interrupted" in err
    if "while starting" in err:  # (else the signal came once the run had begun)
        assert not dest.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_keeps_parts(tree: Tree, dest: Path, signum: int) -> None:
    """SIGINT or SIGTERM mid-transfer exits 130 within ~2 s, keeping .part files and a
    readable manifest, the --json stream ending with an `error` event that says so; a
    rerun completes and records every file."""
    with FaultyFTPServer(tree[0], rate_per_connection=500_000) as server:
        proc = subprocess.Popen([*command(), "mirror", server.url, "--dest", str(dest),
                                 "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not any(p.name.endswith(".part") and p.stat().st_size > 0
                      for p in (dest.iterdir() if dest.exists() else [])):
            assert time.monotonic() < deadline, "no transfer started"
            time.sleep(0.05)
        proc.send_signal(signum)
        start = time.monotonic()
        out, err = proc.communicate(timeout=10)
        assert time.monotonic() - start < 3
        assert proc.returncode == 130, err
        last = json.loads(out.splitlines()[-1])
        assert last["event"] == "error" and last["error"].startswith("interrupted")
        assert any(p.name.endswith(".part") for p in dest.iterdir())
        result = run("mirror", server.url, "--dest", str(dest))
    assert result.returncode == 0
    assert_mirrored(dest, tree[1])
    assert "resumed at" in result.stdout
    with sqlite3.connect(dest / ".pubmed-mirror" / "manifest.sqlite") as db:
        recorded = {name for (name,) in db.execute("SELECT name FROM files")}
    assert recorded == set(tree[1])
