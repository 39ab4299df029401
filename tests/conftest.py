"""Shared fixtures: a tree of files and real FTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aioftp
import pytest

from pubmed_mirror._resume import OVERLAP
from pubmed_mirror.testing import FaultyFTPServer

SIZES = [1_500_000, 700_000, 2_300_000, 64_000, 1_048_576, 3_000_001, 10, 0]


def make_tree(root: Path, sizes: list[int] = SIZES, *, seed: int = 7) -> dict[str, bytes]:
    """Files of pseudo-random bytes (reproducible), named like PubMed's."""
    root.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for i, size in enumerate(sizes, start=1):
        name = f"pubmed26n{i:04d}.xml.gz"
        data = _random_bytes(size, seed * 1000 + i)
        (root / name).write_bytes(data)
        files[name] = data
    return files


class FakeClock:
    """A clock that moves only when a test sets `now`."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _random_bytes(size: int, seed: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:size])


@contextmanager
def tmpfs(where: Path, size: str = "4m") -> Iterator[Path]:
    """A small tmpfs mounted at `where` for one test (root and mount(8) needed: skipped
    otherwise, failed under CI=true), unmounted after it."""
    where.mkdir()
    done = (subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "pubmed-mirror-test",
                            str(where)], capture_output=True, text=True, check=False)
            if shutil.which("mount") else None)
    if done is None or done.returncode != 0:
        reason = ("cannot mount a tmpfs (needs root and mount(8)): "
                  + (done.stderr.strip() if done else "no mount command"))
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        done = subprocess.run(["umount", str(where)], capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:  # something of ours still holds it: detach it all the same
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
        assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def certificate() -> Iterator[tuple[Path, Path]]:
    """A self-signed certificate and key for 127.0.0.1 (made with openssl), for the TLS
    servers the tests start."""
    from webservers import make_certificate

    directory = Path(tempfile.mkdtemp(prefix="pm-cert-"))
    directory.chmod(0o755)
    try:
        yield make_certificate(directory)
    finally:
        shutil.rmtree(directory)


def rest_at(have: int) -> int:
    """Where a resume of a part holding `have` bytes asks the server to start: OVERLAP bytes
    early, which it receives again and compares with the part."""
    return max(0, have - OVERLAP)


def assert_mirrored(dest: Path, files: dict[str, bytes]) -> None:
    """Every file is present and byte-identical; no partial files are left."""
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    leftovers = [p.name for p in dest.iterdir() if p.name.endswith((".part", ".meta"))]
    assert leftovers == []


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "remote"
    return root, make_tree(root)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "local"


@pytest.fixture
def ftpd(tree: tuple[Path, dict[str, bytes]]) -> Iterator[FaultyFTPServer]:
    server = FaultyFTPServer(tree[0])
    server.start()
    yield server
    server.stop()


class CountingServer(aioftp.Server):  # type: ignore[misc]
    """aioftp's server, counting control connections (open now and at peak)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.open_now = 0
        self.peak = 0
        self.total = 0

    async def dispatcher(self, reader: object, writer: object) -> None:
        self.open_now += 1
        self.total += 1
        self.peak = max(self.peak, self.open_now)
        try:
            await super().dispatcher(reader, writer)
        finally:
            self.open_now -= 1


@pytest.fixture
async def aioftpd(tree: tuple[Path, dict[str, bytes]]) -> AsyncIterator[CountingServer]:
    server = CountingServer([aioftp.User(base_path=tree[0])])
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


def url_of(port: int, path: str = "/") -> str:
    return f"ftp://127.0.0.1:{port}{path}"


os.environ.pop("PUBMED_MIRROR_PASSWORD", None)
