"""The installed command against the FTP servers people run: vsftpd (no MLSD: LIST), proftpd
(SIZE only after TYPE I; 530 "too many" after login) and pure-ftpd (421 at greeting), each
serving a generated PubMed-shaped tree on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pubmed_mirror._demo import make_pubmed_tree
from real_ftpd import SERVERS, real_server
from test_cli import command, run

DIRECTORY = "pubmed/updatefiles/"
Tree = tuple[Path, dict[str, bytes]]


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    """Six gzipped PubMed-style files of ~2 MiB with their NAME.md5, a README and a stats
    page; world-readable, outside pytest's private temp directory, as the servers read them
    as an unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="pubmed-mirror-real-"))
    try:
        make_pubmed_tree(root, files=6, target_bytes=2 << 20)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        directory = root / DIRECTORY
        yield root, {p.name: p.read_bytes() for p in directory.iterdir() if ".xml.gz" in p.name}
    finally:
        shutil.rmtree(root)


@pytest.fixture(params=SERVERS)
def server_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def summary(out: str) -> dict[str, Any]:
    last = events(out)[-1]
    assert last["event"] == "summary"
    return last


def mirror(url: str, dest: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("mirror", url + DIRECTORY, "--dest", str(dest), "--include", "*.xml.gz",
               "--json", *extra, timeout=120)


def assert_same(dest: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    assert not [p.name for p in dest.iterdir() if p.name.endswith((".part", ".meta"))]


def test_mirror_verify_and_rerun(server_name: str, tree: Tree, tmp_path: Path) -> None:
    """Every file arrives byte-identical and MD5-checked; `verify` agrees; a second run
    transfers nothing."""
    root, files = tree
    dest = tmp_path / "mirror"
    data_files = sorted(n for n in files if n.endswith(".xml.gz"))
    with real_server(server_name, root, tmp_path / "server") as server:
        first = mirror(server.url, dest)
        assert first.returncode == 0, first.stdout[-2000:] + first.stderr
        done = [e for e in events(first.stdout) if e["event"] == "file_done"]
        assert sorted(e["name"] for e in done) == data_files
        assert all(e["md5"] for e in done)
        assert_same(dest, files)
        checked = run("verify", str(dest))
        assert checked.returncode == 0 and f"{len(data_files)} match their MD5" in checked.stdout
        second = mirror(server.url, dest)
    assert second.returncode == 0, second.stderr
    assert summary(second.stdout) | {"seconds": 0} == {
        "event": "summary", "ok": True, "done": 0, "skipped": len(data_files), "failed": 0,
        "bytes_received": 0, "seconds": 0, "retries": 0, "failures": [], "unrecorded": [],
            "deleted": [], "superseded": [], "deletion_refused": None, "via": {},
        "repaired": []}


def test_resume_after_an_interrupted_run(server_name: str, tree: Tree, tmp_path: Path) -> None:
    """SIGINT mid-mirror keeps the parts; the rerun asks the server for each part's length
    (REST) and receives exactly the bytes that were missing."""
    root, files = tree
    dest = tmp_path / "mirror"
    with real_server(server_name, root, tmp_path / "server") as server:
        proc = subprocess.Popen(
            [*command(), "mirror", server.url + DIRECTORY, "--dest", str(dest),
             "--include", "*.xml.gz", "--rate-limit", "2M", "--concurrency", "2", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not any(p.name.endswith(".part") and p.stat().st_size > 300_000
                      for p in (dest.iterdir() if dest.exists() else [])):
            assert time.monotonic() < deadline and proc.poll() is None, "no transfer started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 130, err
        parts = {p.name.removesuffix(".part"): p.stat().st_size for p in dest.iterdir()
                 if p.name.endswith(".part")}
        assert any(parts.values())
        rerun = mirror(server.url, dest)
    assert rerun.returncode == 0, rerun.stderr
    started = {e["name"]: e["offset"] for e in events(rerun.stdout)
               if e["event"] == "file_started"}
    for name, length in parts.items():
        assert started[name] == length, name
    missing = sum(len(files[name]) - offset for name, offset in started.items())
    assert summary(rerun.stdout)["bytes_received"] == missing
    assert_same(dest, files)


def test_per_ip_limit_below_concurrency(server_name: str, tree: Tree, tmp_path: Path) -> None:
    """The server allows 2 connections per client, the mirror asks for 5: the pool shrinks
    to what the server accepts and every file arrives."""
    root, files = tree
    dest = tmp_path / "mirror"
    with real_server(server_name, root, tmp_path / "server", limit=2) as server:
        result = mirror(server.url, dest, "--concurrency", "5", "-v")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert summary(result.stdout)["done"] == len([n for n in files if n.endswith(".xml.gz")])
    assert "lowering the pool" in result.stderr
    assert_same(dest, files)



def test_tail_split_over_idle_sessions(server_name: str, tmp_path: Path) -> None:
    """A 12 MiB file left at the tail is split over the sessions the small files freed: the
    server serves RETRs at REST offsets inside it, sees data connections closed mid-file,
    and the stitched file is byte-identical and MD5-checked."""
    root = Path(tempfile.mkdtemp(prefix="pubmed-mirror-real-"))
    try:
        directory = root / DIRECTORY
        directory.mkdir(parents=True)
        files = {}
        for number, size in enumerate([12 << 20, 300_000, 200_000, 100_000], start=1):
            name = f"pubmed26n{number:04d}.xml.gz"
            files[name] = data = os.urandom(size)
            (directory / name).write_bytes(data)
            digest = hashlib.md5(data).hexdigest()
            (directory / f"{name}.md5").write_text(f"MD5({name})= {digest}\n")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        dest = tmp_path / "mirror"
        with real_server(server_name, root, tmp_path / "server") as server:
            result = mirror(server.url, dest, "--rate-limit", "8M", "-v")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
        assert "pubmed26n0001.xml.gz: bytes " in result.stderr  # "... on another session"
        assert "on another session" in result.stderr
        done = {e["name"]: e for e in events(result.stdout) if e["event"] == "file_done"}
        assert done["pubmed26n0001.xml.gz"]["md5"] and len(done) == 4
        assert_same(dest, files)
        assert list((dest / ".pubmed-mirror" / "segments").iterdir()) == []
        assert run("verify", str(dest)).returncode == 0
    finally:
        shutil.rmtree(root)
