"""A full disk, for real: DEST on a small tmpfs of the test's own, filled to a chosen number of
free pages. A file that became final is reported done even when its record (manifest row,
NAME.md5) cannot be written, and the next run with space records it without fetching it
again; `verify` checks every file on a full disk and says its verdicts were not recorded."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import make_tree, tmpfs
from pubmed_mirror import Manifest, ManifestEntry
from pubmed_mirror.testing import FaultyFTPServer
from test_cli import run

PAGE = 4096  # tmpfs counts whole pages
SHM_PAGES = 8  # the manifest's -shm file (32 KiB), taken when a run opens it
META_PAGES = 1  # NAME.part.meta: taken before the data, given back at the rename
# the manifest's log after a run recorded its start and its listing (3 frames), before data
RUN_LOG_PAGES = -(-(32 + 3 * (24 + PAGE)) // PAGE)
NAME = "pubmed26n0001.xml.gz"
OTHER = "pubmed26n0002.xml.gz"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted for this test alone, unmounted after it."""
    with tmpfs(tmp_path / "disk") as mount:
        yield mount


def fill(disk: Path, leave_pages: int) -> Path:
    """Take the file system's free space but `leave_pages` pages, with one file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, (free - leave_pages) * PAGE)
    assert os.statvfs(disk).f_bavail == leave_pages
    return filler


def pages(size: int) -> int:
    return -(-size // PAGE)


@pytest.fixture
def remote(tmp_path: Path) -> dict[str, bytes]:
    """Two data files, each with its NCBI-style NAME.md5."""
    root = tmp_path / "remote"
    files = make_tree(root, [200_000, 30_000], seed=17)
    for name, data in list(files.items()):
        checksum = f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()
        (root / f"{name}.md5").write_bytes(checksum)
        files[f"{name}.md5"] = checksum
    return files


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def row(dest: Path, name: str) -> ManifestEntry:
    """NAME's manifest record, read without writing anything (the disk may be full)."""
    with Manifest.open(dest, create=False, read_only=True) as manifest:
        entry = manifest.get(name)
    assert entry is not None, name
    return entry


def leftovers(dest: Path) -> list[str]:
    return [p.name for p in dest.iterdir() if p.name.endswith((".part", ".meta"))]


@pytest.mark.parametrize("how", ["fetched", "checked"])
def test_final_file_whose_record_fails_is_done_and_repaired(
        tmp_path: Path, disk: Path, remote: dict[str, bytes], how: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up once NAME is final: "fetched", NAME's data takes the last pages and
    its manifest row finds none; "checked", a local copy confirmed by MD5 (after a
    --no-verify run) cannot have its NAME.md5 rewritten. Either way NAME is reported done or
    up to date, not failed, with the record named as what failed (summary, --json, exit 1),
    and the next run with space records it without fetching it again."""
    monkeypatch.setenv("COLUMNS", "300")  # one table row per line
    dest = disk / "dest"
    size = len(remote[NAME])
    with FaultyFTPServer(tmp_path / "remote") as server:
        if how == "fetched":
            Manifest.open(dest).close()  # DEST's state, as a first run leaves it
            # after the data, one page is free and the meta's comes back: NAME.md5 takes one,
            # the manifest's log needs more
            filler = fill(disk, SHM_PAGES + RUN_LOG_PAGES + META_PAGES + pages(size) + 1)
        else:
            prepared = run("mirror", server.url, "--dest", str(dest), "--include", NAME,
                           "--no-verify")
            assert prepared.returncode == 0, prepared.stderr
            filler = fill(disk, SHM_PAGES)  # the manifest opens; NAME.md5 finds no page
        full = run("mirror", server.url, "--dest", str(dest), "--include", NAME, "--json")
        again = run("mirror", server.url, "--dest", str(dest), "--include", NAME)
        filler.unlink()
        repaired = run("mirror", server.url, "--dest", str(dest), "--include", NAME, "--json")
        retrieved = server.stats.retr
    assert full.returncode == 1, full.stdout[-3000:] + full.stderr
    summary = events(full.stdout)[-1]
    assert (summary["done"], summary["skipped"], summary["failed"], summary["ok"]) == (
        int(how == "fetched"), int(how == "checked"), 0, False)
    [unrecorded] = summary["unrecorded"]
    assert unrecorded["name"] == NAME and "disk full" in unrecorded["error"]
    if how == "fetched":
        [done] = [e for e in events(full.stdout) if e["event"] == "file_done"]
        assert done["name"] == NAME and "disk full" in done["record_error"]
    assert not [e for e in events(full.stdout) if e["event"] == "file_failed"]
    if how == "checked":  # the run's own record (for `status`) found no page: only warned
        assert "the run's start: not recorded in the manifest" in full.stderr
    assert again.returncode == 1, again.stdout + again.stderr
    assert "not recorded" in again.stdout and "FAILED" not in again.stdout
    assert repaired.returncode == 0, repaired.stdout[-3000:] + repaired.stderr
    summary = events(repaired.stdout)[-1]
    assert (summary["skipped"], summary["unrecorded"], summary["bytes_received"]) == (1, [], 0)
    assert retrieved.get(NAME) == 1  # fetched once, by the first run that had space
    for name in (NAME, f"{NAME}.md5"):
        assert (dest / name).read_bytes() == remote[name]
    recorded = row(dest, NAME)
    assert (recorded.size, recorded.md5) == (size, hashlib.md5(remote[NAME]).hexdigest())
    assert leftovers(dest) == []


@pytest.mark.parametrize("leave_pages", [0, SHM_PAGES], ids=["no-page", "shm-only"])
def test_verify_on_a_full_disk_checks_everything(tmp_path: Path, disk: Path,
                                                 remote: dict[str, bytes],
                                                 leave_pages: int) -> None:
    """On a full disk (no page left: the manifest cannot even open for writing; or just
    enough to open it) `verify` still checks every file and names the corrupt one, says
    that its verdicts were not recorded, and exits 1; with space again it records them."""
    dest = disk / "dest"
    with FaultyFTPServer(tmp_path / "remote") as server:
        mirrored = run("mirror", server.url, "--dest", str(dest))
    assert mirrored.returncode == 0, mirrored.stderr
    before = (dest / OTHER).stat()
    with open(dest / OTHER, "r+b") as f:  # same size, same mtime: only the MD5 can tell
        f.write(bytes([remote[OTHER][0] ^ 0xFF]))
    os.utime(dest / OTHER, ns=(before.st_atime_ns, before.st_mtime_ns))
    filler = fill(disk, leave_pages)
    full = run("verify", str(dest), "--json")
    text = run("verify", str(dest))
    bad_while_full = row(dest, OTHER).bad
    filler.unlink()
    recorded = run("verify", str(dest), "--json")
    assert full.returncode == 1, full.stdout + full.stderr
    checks = {e["name"]: e["verdict"] for e in events(full.stdout) if e["event"] == "check"}
    assert checks == {NAME: "ok", OTHER: "corrupt"}
    summary = events(full.stdout)[-1]
    assert (summary["ok_files"], summary["corrupt_files"]) == (1, 1)
    assert "disk full" in summary["record_error"]
    assert text.returncode == 1
    assert f"CORRUPT  {OTHER}" in text.stdout and "not recorded" in text.stdout
    assert bad_while_full is None
    assert recorded.returncode == 1, recorded.stdout + recorded.stderr
    assert events(recorded.stdout)[-1]["record_error"] is None
    assert row(dest, OTHER).bad is not None and row(dest, NAME).verified_at is not None
