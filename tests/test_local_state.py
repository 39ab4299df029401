"""Hostile and odd local states, and our own names: links where our files go, names near the
file system's 255-byte limit, leftovers of the earlier layout, names the server may not use,
and the directories a run creates. Real FTP servers on 127.0.0.1, real files on disk."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import anyio
import pytest

from conftest import make_tree, rest_at
from pubmed_mirror import MirrorOptions, RetryPolicy, Timeouts, mirror
from pubmed_mirror._layout import meta_path, part_path, segment_path
from pubmed_mirror._transfer import RemoteFile, prepare_part
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import run

NAME = "pubmed26n0001.xml.gz"
WHEN = 1_700_000_000
PRECIOUS = b"a file of the user's, outside DEST\n" * 300


def opts(**kwargs: object) -> MirrorOptions:
    kwargs.setdefault("retry", RetryPolicy(attempts=3, base=0.05, cap=0.2))
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    return MirrorOptions(**kwargs)  # type: ignore[arg-type]


def serve(root: Path, files: dict[str, bytes], *, md5: bool = True) -> dict[str, bytes]:
    """Write `files` into `root` stamped WHEN, each with its NCBI-style NAME.md5 when `md5`
    (and when that name fits); return everything the server then holds."""
    root.mkdir(parents=True, exist_ok=True)
    served = dict(files)
    for name, data in files.items():
        (root / name).write_bytes(data)
        if md5 and len(os.fsencode(name + ".md5")) <= 255:
            line = f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()
            (root / (name + ".md5")).write_bytes(line)
            served[name + ".md5"] = line
    for name in served:
        os.utime(root / name, (WHEN, WHEN))
    return served


def precious(path: Path) -> Path:
    """A file of the user's outside DEST, which no run may touch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PRECIOUS)
    os.utime(path, (WHEN - 5000, WHEN - 5000))
    return path


def untouched(path: Path) -> bool:
    st = path.lstat()
    return path.read_bytes() == PRECIOUS and st.st_mtime == WHEN - 5000


def links_in(dest: Path) -> list[str]:
    return [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_symlink()]


def mirrored_exactly(dest: Path, served: dict[str, bytes]) -> None:
    """DEST holds exactly the served files as regular files with the right bytes, and the
    state directory no partial file, record or segment."""
    assert sorted(p.name for p in dest.iterdir() if p.name != ".pubmed-mirror") == sorted(served)
    for name, data in served.items():
        assert not (dest / name).is_symlink() and (dest / name).read_bytes() == data, name
    state = dest / ".pubmed-mirror"
    leftovers = [p.name for p in state.rglob("*") if p.is_file() and p.parent != state]
    assert leftovers == []
    assert links_in(dest) == []


def plant_link(at: Path, target: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target)


def state_with_part(dest: Path, data: bytes, have: int) -> Path:
    """What an interrupted run leaves: NAME's part holding data[:have], with its record."""
    part = part_path(dest / NAME)
    prepare_part(part, RemoteFile(NAME, len(data), float(WHEN)))
    part.write_bytes(data[:have])
    return part


# -- 3. links in DEST are never followed --------------------------------------------------------


@pytest.mark.parametrize("where", ["part", "checksum part", "record tmp", "segment"])
def test_a_link_where_our_file_goes_is_replaced_never_written_through(tmp_path: Path,
                                                                      where: str) -> None:
    """A link planted where the mirror writes a partial file, its record's temp file or a
    segment is replaced by a regular file: the file it points to outside DEST keeps its
    bytes and mtime, and DEST ends up with regular files only."""
    data = make_tree(tmp_path / "gen", [1_000_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data})
    dest = tmp_path / "local"
    target = precious(tmp_path / "outside" / "keep.bin")
    if where == "part":
        plant_link(part_path(dest / NAME), target)
    elif where == "checksum part":
        plant_link(part_path(dest / (NAME + ".md5")), target)
    elif where == "record tmp":
        meta = meta_path(part_path(dest / NAME))
        plant_link(meta.with_name(meta.name + ".tmp"), target)
    else:  # a segment left by a split, beside a part complete up to its start
        part = state_with_part(dest, data, 500_000)
        plant_link(segment_path(part, 500_000), target)
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest), "--retries", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert untouched(target)
    mirrored_exactly(dest, served)


@pytest.mark.parametrize("layout", ["current", "legacy"])
def test_a_linked_record_is_not_believed(tmp_path: Path, layout: str) -> None:
    """A part's record that is a link to a record-like file outside DEST (naming this very
    version) is not read: the part beside it, whose bytes are wrong, is started again from 0
    instead of being resumed."""
    data = make_tree(tmp_path / "gen", [400_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data}, md5=False)
    dest = tmp_path / "local"
    part = part_path(dest / NAME)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 100_000)  # not the file's bytes: resuming would keep them
    record = tmp_path / "outside" / "record.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"size": len(data), "mtime": float(WHEN),
                                  "started": time.time()}))
    meta = meta_path(part) if layout == "current" else dest / (NAME + ".part.meta")
    plant_link(meta, record)
    before = record.read_bytes()
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest))
        offsets = server.stats.rest_offsets[NAME]
    assert result.returncode == 0, result.stdout + result.stderr
    assert offsets == [0]
    assert record.read_bytes() == before
    mirrored_exactly(dest, served)


@pytest.mark.parametrize("what", [".pubmed-mirror", ".pubmed-mirror/lock",
                                  ".pubmed-mirror/manifest.sqlite"])
@pytest.mark.parametrize("command", ["mirror", "dry-run", "verify"])
def test_a_linked_state_directory_manifest_or_lock_is_refused(tmp_path: Path, what: str,
                                                             command: str) -> None:
    """A state directory, lock or manifest that is a link out of DEST is refused with one
    error line (mirror, also a dry run: exit 2 before any connection, like an unwritable
    DEST; verify: exit 1), and nothing is created or written where it points."""
    serve(tmp_path / "remote", {NAME: b"x" * 1000})
    dest = tmp_path / "local"
    dest.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plant_link(dest / what, elsewhere if what == ".pubmed-mirror" else elsewhere / "f")
    with FaultyFTPServer(tmp_path / "remote") as server:
        if command == "verify":
            result = run("verify", str(dest))
        else:
            result = run("mirror", server.url, "--dest", str(dest),
                         *(["--dry-run"] if command == "dry-run" else []))
        connections = server.stats.connections
    assert result.returncode == (1 if command == "verify" else 2), result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "symbolic link" in result.stderr, result.stderr
    assert connections == 0
    assert list(elsewhere.iterdir()) == []
    assert not (dest / NAME).exists()


def test_a_linked_segments_directory_is_replaced(tmp_path: Path) -> None:
    """The segments directory is a link to a directory outside DEST holding a file named
    like one of NAME's segments: the link is replaced by a directory of our own, and that
    file is neither adopted, written, nor removed."""
    data = make_tree(tmp_path / "gen", [1_000_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data})
    dest = tmp_path / "local"
    part = state_with_part(dest, data, 500_000)
    folder = segment_path(part, 500_000).parent
    if folder.is_dir():
        folder.rmdir()
    outside = tmp_path / "outside"
    lookalike = outside / segment_path(part, 500_000).name
    outside.mkdir()
    lookalike.write_bytes(data[500_000:600_000])
    plant_link(folder, outside)
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert lookalike.read_bytes() == data[500_000:600_000]
    assert sorted(p.name for p in outside.iterdir()) == [lookalike.name]
    mirrored_exactly(dest, served)


@pytest.mark.parametrize("md5", [True, False])
def test_a_linked_final_name_is_replaced_not_trusted(tmp_path: Path, md5: bool) -> None:
    """DEST/NAME is a link to a copy outside DEST with the right size, mtime and bytes: it
    is not taken for our file (not skipped, never hashed as ours); the file is fetched and
    its rename replaces the link itself, leaving the copy as it was."""
    data = make_tree(tmp_path / "gen", [300_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data}, md5=md5)
    dest = tmp_path / "local"
    copy = tmp_path / "outside" / NAME
    copy.parent.mkdir()
    copy.write_bytes(data)
    os.utime(copy, (WHEN, WHEN))
    plant_link(dest / NAME, copy)
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest), "--json")
        retr = server.stats.retr
    assert result.returncode == 0, result.stdout + result.stderr
    assert retr.get(NAME) == 1
    assert copy.read_bytes() == data and copy.lstat().st_mtime == WHEN
    mirrored_exactly(dest, served)


@pytest.mark.parametrize("linked", [NAME, NAME + ".md5"])
def test_verify_does_not_follow_a_link_out_of_dest(tmp_path: Path, linked: str) -> None:
    """After a good mirror, NAME (or NAME.md5) is replaced by a link to an identical copy
    outside DEST: `verify` calls NAME corrupt (exit 1) instead of hashing the target, and the
    next mirror fetches it again as a regular file."""
    data = make_tree(tmp_path / "gen", [300_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data})
    dest = tmp_path / "local"
    with FaultyFTPServer(tmp_path / "remote") as server:
        assert run("mirror", server.url, "--dest", str(dest)).returncode == 0
        copy = tmp_path / "outside" / linked
        copy.parent.mkdir()
        os.replace(dest / linked, copy)
        (dest / linked).symlink_to(copy)
        checked = run("verify", str(dest), "--json")
        again = run("mirror", server.url, "--dest", str(dest))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    verdicts = {e["name"]: e["verdict"] for e in map(json.loads, checked.stdout.splitlines())
                if e["event"] == "check"}
    assert verdicts == {NAME: "corrupt"}
    assert again.returncode == 0, again.stdout + again.stderr
    assert copy.read_bytes() == served[linked]
    mirrored_exactly(dest, served)


# -- 7. names up to the file system's limit ------------------------------------------------------


def long_name(nbytes: int, char: str = "a") -> str:
    """A PubMed-like name of exactly `nbytes` bytes in UTF-8, padded with `char`."""
    tail = ".xml.gz"
    width = len(char.encode())
    room = nbytes - len(tail) - len("pubmed26n0001")
    name = "pubmed26n0001" + char * (room // width) + "b" * (room % width) + tail
    assert len(name.encode()) == nbytes
    return name


LONG_NAMES = [long_name(n) for n in (241, 242, 245, 246, 250, 251, 255)]
LONG_NAMES += [long_name(255, "é"), long_name(254, "文"), long_name(255, "文"),
               long_name(251, "文")]


@pytest.fixture
def long_tree(tmp_path: Path) -> dict[str, bytes]:
    """Files with names from 241 to 255 bytes (ASCII, 2- and 3-byte UTF-8), each with its
    NAME.md5 where that fits."""
    data = make_tree(tmp_path / "gen", [300_000 + 1000 * i for i in range(len(LONG_NAMES))])
    return serve(tmp_path / "remote", dict(zip(LONG_NAMES, data.values(), strict=True)))


def test_names_up_to_255_bytes_are_mirrored_resumed_verified_and_skipped(
        tmp_path: Path, long_tree: dict[str, bytes]) -> None:
    """Every name up to 255 bytes is mirrored: a first run dropped after 100 kB of each file
    (no retries) keeps every part; the second resumes each at exactly 100 kB and checks its
    MD5; `verify` passes; a third run skips them all with no transfer."""
    dest = tmp_path / "local"
    with FaultyFTPServer(tmp_path / "remote") as server:
        for name in LONG_NAMES:
            server.faults.add(name, Fault(kind="close_426", after_bytes=100_000))
        first = run("mirror", server.url, "--dest", str(dest), "--retries", "0", "--json")
        second = run("mirror", server.url, "--dest", str(dest), "--json")
        checked = run("verify", str(dest), "--json")
        retr = server.stats.retr
        third = run("mirror", server.url, "--dest", str(dest), "--json")
        stats = server.stats
    assert first.returncode == 1, first.stdout + first.stderr
    failed = [e["name"] for e in map(json.loads, first.stdout.splitlines())
              if e["event"] == "file_failed"]
    assert sorted(failed) == sorted(LONG_NAMES), first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    for name in LONG_NAMES:
        assert stats.rest_offsets[name] == [0, rest_at(100_000)], name
    mirrored_exactly(dest, long_tree)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    summary = json.loads(checked.stdout.splitlines()[-1])
    with_md5 = [n for n in LONG_NAMES if n + ".md5" in long_tree]
    assert (summary["ok_files"], summary["unchecked_files"]) == (
        len(with_md5), len(LONG_NAMES) - len(with_md5))
    assert third.returncode == 0, third.stdout + third.stderr
    assert json.loads(third.stdout.splitlines()[-1])["skipped"] == len(LONG_NAMES)
    assert stats.retr == retr


@pytest.mark.parametrize("name", [long_name(255), long_name(255, "文"), long_name(246)])
async def test_a_long_name_is_split_over_idle_sessions(tmp_path: Path, name: str) -> None:
    """A 6 MB file with a long name behind three small ones is split (REST offsets inside it
    from other sessions), each segment received under our own short name, stitched and
    MD5-checked; nothing of it is left in the state directory."""
    data = make_tree(tmp_path / "gen", [6_000_000, 100_000, 120_000, 90_000])
    big, *small = data
    served = serve(tmp_path / "remote", {name: data[big], **{s: data[s] for s in small}})
    dest = tmp_path / "local"
    with FaultyFTPServer(tmp_path / "remote", rate_per_connection=1_500_000) as server:
        report = await mirror(server.url, dest, opts(concurrency=4, split_min=1_000_000))
        offsets = server.stats.rest_offsets[name]
    assert report.ok, report.failed
    assert offsets[0] == 0 and len(offsets) >= 3, offsets
    mirrored_exactly(dest, served)


async def test_an_interrupted_split_of_a_long_name_resumes(tmp_path: Path) -> None:
    """The part and segments a cancelled run left for a 255-byte name are resumed by the next
    run: it receives exactly the bytes that were missing."""
    name = long_name(255)
    data = make_tree(tmp_path / "gen", [6_000_000, 100_000, 120_000, 90_000])
    big, *small = data
    served = serve(tmp_path / "remote", {name: data[big], **{s: data[s] for s in small}})
    dest = tmp_path / "local"
    part = part_path(dest / name)
    folder = segment_path(part, 0).parent

    def kept() -> int:
        found = list(folder.iterdir()) if folder.is_dir() else []
        return sum(p.stat().st_size for p in found if p.stat().st_size > 100_000)

    with FaultyFTPServer(tmp_path / "remote", rate_per_connection=1_500_000) as server:
        async with anyio.create_task_group() as tg:
            async def go() -> None:
                await mirror(server.url, dest, opts(concurrency=4, split_min=1_000_000))
                raise AssertionError("the mirror ended before it was cancelled")

            tg.start_soon(go)
            with anyio.fail_after(20):
                while kept() < 300_000:  # noqa: ASYNC110 (watching files)
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
        have = part.stat().st_size + sum(p.stat().st_size for p in folder.iterdir())
        report = await mirror(server.url, dest, opts(concurrency=4, split_min=None))
    assert report.ok, report.failed
    done = {f.name: f for f in report.done}
    assert done[name].received == len(data[big]) - have
    mirrored_exactly(dest, served)


# -- leftovers of the earlier layout (NAME.part.meta beside NAME.part) ------------------------


@pytest.mark.parametrize("same_version", [True, False])
def test_an_old_layout_part_is_resumed_or_restarted(tmp_path: Path, same_version: bool) -> None:
    """NAME.part with NAME.part.meta beside it (and a stray NAME.part.meta.tmp), as an
    earlier version left them: resumed at the part's length when the record names this
    version, started again from 0 when it names another; either way no leftover remains."""
    data = make_tree(tmp_path / "gen", [400_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data}, md5=False)
    dest = tmp_path / "local"
    dest.mkdir()
    (dest / (NAME + ".part")).write_bytes(data[:150_000])
    record = {"size": len(data), "mtime": float(WHEN if same_version else WHEN - 86400),
              "started": time.time()}
    (dest / (NAME + ".part.meta")).write_text(json.dumps(record))
    (dest / (NAME + ".part.meta.tmp")).write_text("{")
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest))
        offsets = server.stats.rest_offsets[NAME]
    assert result.returncode == 0, result.stdout + result.stderr
    assert offsets == ([rest_at(150_000)] if same_version else [0])
    mirrored_exactly(dest, served)


def test_an_old_and_a_new_record_together_restart_the_part(tmp_path: Path) -> None:
    """A part with both a current record and an old-layout one (an older version ran after a
    newer one): which one the part's bytes belong to is unknown, so it starts again from 0."""
    data = make_tree(tmp_path / "gen", [400_000])["pubmed26n0001.xml.gz"]
    served = serve(tmp_path / "remote", {NAME: data}, md5=False)
    dest = tmp_path / "local"
    state_with_part(dest, b"\0" * len(data), 150_000)
    (dest / (NAME + ".part.meta")).write_text(
        json.dumps({"size": len(data), "mtime": float(WHEN), "started": time.time()}))
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest))
        offsets = server.stats.rest_offsets[NAME]
    assert result.returncode == 0, result.stdout + result.stderr
    assert offsets == [0]
    mirrored_exactly(dest, served)


# -- 15c. the names we may create in DEST, and no others, are refused -------------------------


def test_exactly_our_own_names_are_refused(tmp_path: Path) -> None:
    """Listed names we may create or remove in DEST (NAME.part, the old NAME.part.meta and
    NAME.part.meta.tmp, the state directory) are skipped with a warning; look-alikes that are
    not ours (x.tmp, x.meta, .part, .pubmed-mirror-notes) are mirrored."""
    ours = ["a.gz.part", "a.gz.part.meta", "a.gz.part.meta.tmp", ".pubmed-mirror"]
    theirs = ["a.gz", "x.tmp", "x.meta", "x.part.tmp", ".part", ".pubmed-mirror-notes"]
    served = serve(tmp_path / "remote", {n: n.encode() * 3 for n in ours + theirs}, md5=False)
    dest = tmp_path / "local"
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url, "--dest", str(dest))
        retr = server.stats.retr
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ours:
        assert f"skipping entry {name!r}" in result.stderr
    assert sorted(retr) == sorted(theirs)
    mirrored_exactly(dest, {n: served[n] for n in theirs})


# -- 15d. the directories a failed run created, and only those, are removed -------------------


def test_a_failed_run_removes_the_directories_it_created(tmp_path: Path) -> None:
    """DEST two levels below an existing directory, and a listing that fails (550): the run
    exits 1 and removes DEST and both parents it created, and nothing above them."""
    (tmp_path / "remote").mkdir()
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "mine.txt").write_text("the user's")
    dest = keep / "new" / "deeper" / "dest"
    with FaultyFTPServer(tmp_path / "remote") as server:
        result = run("mirror", server.url + "missing/", "--dest", str(dest))
    assert result.returncode == 1, result.stdout + result.stderr
    assert sorted(p.name for p in keep.iterdir()) == ["mine.txt"]
