"""The PubMed bulk-mirror command end to end: the installed `pubmed-mirror` as a subprocess
against FaultyFTPServer on 127.0.0.1, with NCBI-style .md5 files and faults in the server."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import make_tree, tmpfs
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import command, free_port, run

PubMed = tuple[Path, dict[str, bytes]]
SIZES = [900_000, 1_200_000, 300_000, 2_000_000, 50_000]
NAMES = [f"pubmed26n{i:04d}.xml.gz" for i in range(1, len(SIZES) + 1)]
MTIME = 1_767_268_800  # 2026-01-01 12:00 UTC


def md5_line(name: str, data: bytes) -> bytes:
    return f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()


def publish(root: Path, files: dict[str, bytes], *, mtime: int = MTIME) -> None:
    """Write each file with its NCBI-style NAME.md5, both stamped `mtime`."""
    for name, data in files.items():
        (root / name).write_bytes(data)
        (root / (name + ".md5")).write_bytes(md5_line(name, data))
        for path in (root / name, root / (name + ".md5")):
            os.utime(path, (mtime, mtime))


@pytest.fixture
def pubmed(tmp_path: Path) -> PubMed:
    root = tmp_path / "remote"
    files = make_tree(root, SIZES, seed=26)
    publish(root, files)
    (root / "README.txt").write_text("not a data file\n")
    (root / "pubmed26n0001_stats.html").write_text("<html></html>\n")
    return root, files


@pytest.fixture
def server(pubmed: PubMed) -> Iterator[FaultyFTPServer]:
    with FaultyFTPServer(pubmed[0]) as running:
        yield running


def mirror_cmd(server: FaultyFTPServer, dest: Path, *extra: str,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run("mirror", server.url, "--dest", str(dest), "--include", "*.xml.gz",
               "--retries", "2", *extra, timeout=timeout)


def manifest_rows(dest: Path) -> dict[str, tuple[int, float | None, str | None]]:
    with sqlite3.connect(dest / ".pubmed-mirror" / "manifest.sqlite") as db:
        rows = db.execute("SELECT name, size, mtime, md5 FROM files").fetchall()
    return {name: (size, mtime, md5) for name, size, mtime, md5 in rows}


def data_retrs(server: FaultyFTPServer) -> int:
    return sum(n for name, n in server.stats.retr.items() if not name.endswith(".md5"))


# -- a normal run, and the next one ------------------------------------------------------------


def test_mirror_verifies_md5_and_records_the_manifest(server: FaultyFTPServer, pubmed: PubMed,
                                                      dest: Path) -> None:
    """Each data file arrives with its .md5, MD5-checked, recorded in the manifest with its
    remote size, mtime and digest; README and stats files are not selected."""
    result = mirror_cmd(server, dest)
    assert result.returncode == 0, result.stderr
    for name, data in pubmed[1].items():
        assert (dest / name).read_bytes() == data
        assert (dest / (name + ".md5")).read_bytes() == md5_line(name, data)
        assert (dest / name).stat().st_mtime == MTIME
        assert f"done    {name}" in result.stdout
    assert result.stdout.count("MD5 ok") == len(NAMES)
    assert not (dest / "README.txt").exists() and not (dest / "pubmed26n0001_stats.html").exists()
    rows = manifest_rows(dest)
    for name, data in pubmed[1].items():
        assert rows[name] == (len(data), MTIME, hashlib.md5(data).hexdigest())
        assert rows[name + ".md5"][0] == len(md5_line(name, data))


def test_second_run_transfers_nothing(server: FaultyFTPServer, dest: Path) -> None:
    """Over an unchanged tree the second run lists, skips every file and sends no RETR."""
    assert mirror_cmd(server, dest).returncode == 0
    retrs = sum(server.stats.retr.values())
    result = mirror_cmd(server, dest)
    assert result.returncode == 0
    assert sum(server.stats.retr.values()) == retrs
    assert not any(line.startswith("done ") for line in result.stdout.splitlines())
    assert "skipped (up to date) │ 5" in result.stdout


def test_changed_remote_file_is_fetched_again(server: FaultyFTPServer, pubmed: PubMed,
                                              dest: Path) -> None:
    """A file whose remote size and mtime changed is fetched again; the others are not."""
    assert mirror_cmd(server, dest).returncode == 0
    changed = NAMES[2]
    new = b"a new version of the file" * 1000
    publish(pubmed[0], {changed: new}, mtime=MTIME + 86_400)
    before = dict(server.stats.retr)
    result = mirror_cmd(server, dest)
    assert result.returncode == 0, result.stderr
    assert (dest / changed).read_bytes() == new
    assert (dest / (changed + ".md5")).read_bytes() == md5_line(changed, new)
    fetched = {n for n, count in server.stats.retr.items() if count > before.get(n, 0)}
    assert fetched == {changed, changed + ".md5"}


def test_lost_manifest_is_rebuilt_by_hashing_not_by_fetching(server: FaultyFTPServer,
                                                             pubmed: PubMed,
                                                             dest: Path) -> None:
    """Without a manifest, local copies with the remote size and mtime are confirmed by MD5
    (no data RETR); one whose bytes were changed behind our back is fetched again."""
    assert mirror_cmd(server, dest).returncode == 0
    for path in (dest / ".pubmed-mirror").glob("manifest.sqlite*"):
        path.unlink()
    victim = dest / NAMES[1]
    flipped = bytearray(victim.read_bytes())
    flipped[1000] ^= 0x01
    victim.write_bytes(bytes(flipped))
    os.utime(victim, (MTIME, MTIME))
    before = data_retrs(server)
    result = mirror_cmd(server, dest)
    assert result.returncode == 0, result.stderr
    assert data_retrs(server) == before + 1  # only the damaged one
    assert f"skipped (up to date) │ {len(NAMES) - 1} " in result.stdout  # counted once
    assert victim.read_bytes() == pubmed[1][NAMES[1]]
    assert set(manifest_rows(dest)) >= set(NAMES)


# -- MD5 mismatches --------------------------------------------------------------------------


def test_corrupt_transfer_is_refetched_from_zero(server: FaultyFTPServer, pubmed: PubMed,
                                                 dest: Path) -> None:
    """A byte corrupted in transit (full size, 226) fails the MD5: the copy is discarded and
    fetched again from zero; the final file is right."""
    name = NAMES[3]
    server.faults.add(name, Fault(kind="corrupt", after_bytes=777_777))
    result = mirror_cmd(server, dest)
    assert result.returncode == 0, result.stderr
    assert (dest / name).read_bytes() == pubmed[1][name]
    assert server.stats.rest_offsets[name] == [0, 0]
    assert "does not match" in result.stdout  # the retry line says why


def test_file_that_never_matches_fails_and_leaves_no_file(server: FaultyFTPServer,
                                                          pubmed: PubMed, dest: Path) -> None:
    """A .md5 the bytes never match: bounded refetches, exit 1 naming the file and the MD5,
    no final file and no part; the other files are done."""
    name = NAMES[0]
    (pubmed[0] / (name + ".md5")).write_bytes(f"MD5({name})= {'0' * 32}\n".encode())
    result = mirror_cmd(server, dest)
    assert result.returncode == 1
    assert f"FAILED  {name}" in result.stdout and "MD5" in result.stdout
    assert server.stats.retr[name] == 3  # --retries 2
    assert not (dest / name).exists() and not (dest / (name + ".part")).exists()
    for other in NAMES[1:]:
        assert (dest / other).read_bytes() == pubmed[1][other]


def test_no_verify_keeps_what_the_server_sent(server: FaultyFTPServer, pubmed: PubMed,
                                              dest: Path) -> None:
    """--no-verify checks sizes only: a wrong .md5 does not fail the file (it is still copied)."""
    name = NAMES[0]
    (pubmed[0] / (name + ".md5")).write_bytes(f"MD5({name})= {'0' * 32}\n".encode())
    result = mirror_cmd(server, dest, "--no-verify")
    assert result.returncode == 0, result.stderr
    assert (dest / name).read_bytes() == pubmed[1][name]
    assert "MD5 ok" not in result.stdout
    assert (dest / (name + ".md5")).exists()


# -- selection, dry run, output --------------------------------------------------------------


def test_newest_takes_the_last_files_by_number(server: FaultyFTPServer, dest: Path) -> None:
    """--newest 2 mirrors the two highest-numbered files (and their .md5), nothing else."""
    result = mirror_cmd(server, dest, "--newest", "2")
    assert result.returncode == 0, result.stderr
    present = sorted(p.name for p in dest.iterdir() if not p.name.startswith("."))
    assert present == sorted([*NAMES[-2:], *(n + ".md5" for n in NAMES[-2:])])


def test_dry_run_prints_the_plan_and_transfers_nothing(server: FaultyFTPServer, pubmed: PubMed,
                                                       dest: Path) -> None:
    """--dry-run names every file it would fetch and the bytes, sends no RETR, writes no file."""
    result = mirror_cmd(server, dest, "--dry-run")
    assert result.returncode == 0, result.stderr
    for name in NAMES:
        assert name in result.stdout
    total = sum(SIZES)
    assert f"would fetch up to {len(NAMES)} files" in result.stdout
    assert server.stats.retr == {}
    assert not dest.exists()  # nothing written, not even the state directory
    plan = json.loads(mirror_cmd(server, dest, "--dry-run", "--json").stdout)
    assert plan["bytes_to_fetch"] == total
    assert {f["name"]: f["action"] for f in plan["files"]} == dict.fromkeys(NAMES, "fetch")


def test_json_output_is_one_object_per_line(server: FaultyFTPServer, dest: Path) -> None:
    """--json writes parseable events, then a summary with the counts."""
    result = mirror_cmd(server, dest, "--json")
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [o["event"] for o in objects]
    assert kinds.count("file_done") == len(NAMES) and kinds[-1] == "summary"
    assert objects[-1]["done"] == len(NAMES) and objects[-1]["ok"] is True
    assert all(o["md5"] for o in objects if o["event"] == "file_done")


def test_progress_lines_when_not_a_terminal(pubmed: PubMed, dest: Path) -> None:
    """Piped output gets a plain progress line every --progress-every seconds."""
    with FaultyFTPServer(pubmed[0], rate_per_connection=1_000_000) as slow:
        result = mirror_cmd(slow, dest, "--progress-every", "0.5", "--concurrency", "2")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("progress: ")]
    assert len(lines) >= 2
    assert f"/{len(NAMES)} files" in lines[-1] and "ETA" in lines[-1]


def test_verbose_logs_the_plan_and_each_attempt(server: FaultyFTPServer, dest: Path) -> None:
    """-v logs the listing's plan and where each attempt starts, on stderr."""
    result = mirror_cmd(server, dest, "-v", "--max-files", "2")
    assert result.returncode == 0, result.stderr
    assert "2 selected: 2 to fetch, 0 to check, 0 up to date" in result.stderr
    assert f"INFO: {NAMES[1]}: attempt 1, from byte 0 of {SIZES[1]}" in result.stderr


def test_quiet_prints_nothing_on_success(server: FaultyFTPServer, dest: Path) -> None:
    """-q: a clean run prints nothing at all."""
    result = mirror_cmd(server, dest, "-q")
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""


# -- verify and ls ---------------------------------------------------------------------------


def test_verify_finds_a_flipped_byte_and_a_missing_file(server: FaultyFTPServer,
                                                        dest: Path) -> None:
    """verify passes a clean mirror, then names a file with one flipped byte and a deleted
    one, and exits 1."""
    assert mirror_cmd(server, dest).returncode == 0
    clean = run("verify", str(dest))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{len(NAMES)} match their MD5" in clean.stdout
    victim = dest / NAMES[3]
    data = bytearray(victim.read_bytes())
    data[123_456] ^= 0x40
    victim.write_bytes(bytes(data))
    os.utime(victim, (MTIME, MTIME))  # same size and mtime: only a hash can tell
    (dest / NAMES[4]).unlink()
    result = run("verify", str(dest))
    assert result.returncode == 1
    assert f"CORRUPT  {NAMES[3]}" in result.stdout and f"MISSING  {NAMES[4]}" in result.stdout
    assert NAMES[0] not in result.stdout
    # verify told the manifest: the next mirror fetches both again, and nothing else
    assert run("verify", str(dest)).returncode == 1  # still wrong until a mirror repairs it
    before = dict(server.stats.retr)
    repaired = mirror_cmd(server, dest)
    assert repaired.returncode == 0, repaired.stderr
    fetched = {n for n, count in server.stats.retr.items() if count > before.get(n, 0)}
    assert {NAMES[3], NAMES[4]} <= fetched and not fetched & set(NAMES[:3])
    assert run("verify", str(dest)).returncode == 0


def test_ls_lists_sizes_and_times(server: FaultyFTPServer, pubmed: PubMed) -> None:
    """ls prints every entry with its size; --json gives one object per line with name,
    size and mtime."""
    table = run("ls", server.url)
    assert table.returncode == 0, table.stderr
    assert NAMES[0] in table.stdout and "README.txt" in table.stdout
    lines = run("ls", server.url, "--json").stdout.splitlines()
    entries = {e["name"]: e for e in map(json.loads, lines)}
    assert len(entries) == len(lines) > len(NAMES)
    assert entries[NAMES[1]]["size"] == SIZES[1]
    assert entries[NAMES[1]]["mtime"] == MTIME
    assert entries[NAMES[1]]["modified"] == "2026-01-01 12:00:00"


# -- concurrency and bad input ---------------------------------------------------------------


def test_second_mirror_into_the_same_dest_is_refused(server: FaultyFTPServer,
                                                     dest: Path) -> None:
    """While another process holds DEST's lock, mirror refuses at once with exit 2, before
    any connection."""
    lock = dest / ".pubmed-mirror" / "lock"
    lock.parent.mkdir(parents=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("4242\n")
        held.flush()
        result = mirror_cmd(server, dest)
    assert result.returncode == 2
    assert "another pubmed-mirror" in result.stderr and "4242" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert server.stats.connections == 0
    assert mirror_cmd(server, dest).returncode == 0  # released: the next run goes ahead


def test_missing_remote_directory_exits_1(server: FaultyFTPServer, dest: Path) -> None:
    """A directory the server does not have: one line quoting the 550, exit 1, and no empty
    DEST left behind (one that existed before stays)."""
    result = run("mirror", server.url + "no/such/dir/", "--dest", str(dest / "new" / "d"))
    assert result.returncode == 1
    assert "550" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (dest / "new" / "d").exists()
    dest.mkdir(exist_ok=True)  # (made as a parent of new/d)
    assert run("mirror", server.url + "no/such/dir/", "--dest", str(dest)).returncode == 1
    assert dest.is_dir()


def test_unknown_host_exits_1_with_one_line(dest: Path) -> None:
    """A host name that does not resolve: one line, exit 1, quickly."""
    start = time.monotonic()
    result = run("mirror", "ftp://no-such-host.invalid/pubmed/", "--dest", str(dest))
    assert result.returncode == 1
    assert "resolve" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["mirror", "pubmed:nonsense", "--dest", "x"], "unknown preset"),
        (["mirror", "pubmed:baseline", "--dest", "x", "--newest", "-1"], "0 or more"),
        (["mirror", "pubmed:baseline", "--dest", ""], "empty name"),
        (["verify", " "], "empty name"),
        (["ls", "gopher://x/"], "unsupported URL"),
        (["mirror", "ftp://127.0.0.1/", "--dest", "x", "-q", "-v"], "not allowed with"),
    ],
)
def test_more_bad_usage_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    """Presets, --newest, ls URLs and -q/-v are checked before any I/O: exit 2, one message."""
    result = subprocess.run([*command(), *args], capture_output=True, text=True, timeout=30,
                            cwd=tmp_path, check=False)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "x").exists()


def test_refused_port_for_ls_exits_1(tmp_path: Path) -> None:
    """ls against a port nobody listens on: one line, exit 1."""
    result = run("ls", f"ftp://127.0.0.1:{free_port()}/")
    assert result.returncode == 1 and "refused" in result.stderr


# -- names from the server, and the local disk -----------------------------------------------


@pytest.mark.parametrize("disable_mlsd", [False, True])
def test_hostile_names_never_leave_dest(tmp_path: Path, disable_mlsd: bool) -> None:
    """Names with a backslash, control characters or our state directory's name, and a
    symlink out of the tree, are refused with a warning; only the good file lands in DEST.
    (pyftpdlib's MLSD shows the link as a file and refuses its RETR with 550; LIST shows it
    as a link, which we skip.)"""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    remote.mkdir()
    (tmp_path / "secret.txt").write_text("outside the tree\n")
    (remote / "good.xml.gz").write_bytes(b"good")
    (remote / "[bold]odd.xml.gz").write_bytes(b"odd but safe")
    for name in ("evil\\name.xml.gz", "ctl\x01.xml.gz", ".pubmed-mirror"):
        (remote / name).write_bytes(b"bad")
    (remote / "link.xml.gz").symlink_to(tmp_path / "secret.txt")
    with FaultyFTPServer(remote, disable_mlsd=disable_mlsd) as server:
        result = run("mirror", server.url, "--dest", str(dest), "--retries", "0")
    assert "contains a path separator" in result.stderr
    assert "control or bidi characters" in result.stderr and "state directory" in result.stderr
    landed = sorted(p.name for p in dest.iterdir() if p.name != ".pubmed-mirror")
    assert landed == ["[bold]odd.xml.gz", "good.xml.gz"]
    assert "done    [bold]odd.xml.gz" in result.stdout  # printed as it is, not as markup
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local", "remote", "secret.txt"]
    if disable_mlsd:
        assert result.returncode == 0 and "skipping symlink entry 'link.xml.gz'" in result.stderr
    else:
        assert result.returncode == 1 and "FAILED  link.xml.gz" in result.stdout


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs of this test's own."""
    with tmpfs(tmp_path / "disk", "3m") as mount:
        yield mount


def test_disk_full_fails_that_file_cleanly(tmp_path: Path, small_disk: Path) -> None:
    """A file that does not fit fails with "disk full", exit 1; no final file appears, the
    files before it are complete, and the part is kept for a later resume."""
    remote = tmp_path / "remote"
    files = make_tree(remote, [100_000, 5_000_000], seed=3)
    publish(remote, files)
    dest = small_disk / "pubmed"
    with FaultyFTPServer(remote) as server:
        result = mirror_cmd(server, dest, "--concurrency", "1")
    small, big = sorted(files)
    assert result.returncode == 1
    assert f"FAILED  {big}" in result.stdout and "disk full" in result.stdout
    assert (dest / small).read_bytes() == files[small]
    assert not (dest / big).exists()
    part = (dest / (big + ".part")).read_bytes()
    assert len(part) < len(files[big]) and files[big].startswith(part)  # an exact prefix


def test_terminal_gets_progress_bars(pubmed: PubMed, dest: Path) -> None:
    """On a terminal: an overall bar with files done, a bar per transfer, then the summary."""
    import pty
    import select

    main_fd, child_fd = pty.openpty()
    with FaultyFTPServer(pubmed[0], rate_per_connection=1_500_000) as slow:
        proc = subprocess.Popen([*command(), "mirror", slow.url, "--dest", str(dest),
                                 "--include", "*.xml.gz", "--concurrency", "2"],
                                stdin=child_fd, stdout=child_fd, stderr=child_fd,
                                env={**os.environ, "COLUMNS": "120", "TERM": "xterm"})
        os.close(child_fd)
        out = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if select.select([main_fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(main_fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        os.close(main_fd)
        assert proc.wait(timeout=10) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))  # no colours
    assert "━" in text and f"total {len(NAMES)}/{len(NAMES)} files" in text
    assert any(f"{name} ━" in text for name in NAMES)  # a per-file bar
    assert "pubmed-mirror summary" in text


# -- checksum files that go wrong, and --no-verify --------------------------------------------


def test_short_checksum_file_is_fetched_again(server: FaultyFTPServer, pubmed: PubMed,
                                              dest: Path) -> None:
    """A NAME.md5 cut short (with a lying 226) does not match its listed size: it is fetched
    again, and NAME is checked against the whole one."""
    name = NAMES[1]
    server.faults.add(name + ".md5", Fault(kind="close_226", after_bytes=20))
    result = mirror_cmd(server, dest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.stats.retr[name + ".md5"] == 2
    assert "checksum file: 20 bytes" in result.stdout
    assert (dest / name).read_bytes() == pubmed[1][name]
    assert (dest / (name + ".md5")).read_bytes() == md5_line(name, pubmed[1][name])


def test_unreadable_checksum_file_is_retried_then_fails(server: FaultyFTPServer,
                                                        pubmed: PubMed, dest: Path) -> None:
    """A NAME.md5 that is not a checksum is asked for again (bounded); NAME then fails with
    the reason, is never fetched, and leaves nothing behind."""
    name = NAMES[2]
    (pubmed[0] / (name + ".md5")).write_bytes(b"<html>503 try later</html>\n")
    result = mirror_cmd(server, dest)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and name in failed[0]
    assert "cannot read the checksum file" in failed[0]
    assert server.stats.retr[name + ".md5"] == 3 and server.stats.retr.get(name, 0) == 0
    assert not list(dest.glob(name + "*"))


def test_no_verify_survives_a_missing_checksum_file_and_verify_catches_up(
        server: FaultyFTPServer, pubmed: PubMed, dest: Path) -> None:
    """--no-verify: a 550 on NAME.md5 only warns. The next verified run checks the files
    recorded without an MD5 by hashing them (no refetch of right ones) and refetches a copy
    the server had corrupted."""
    gone, corrupted = NAMES[0], NAMES[3]
    server.faults.add(gone + ".md5", Fault(kind="reply", reply="550 No such file"))
    server.faults.add(corrupted, Fault(kind="corrupt", after_bytes=1000))
    first = mirror_cmd(server, dest, "--no-verify")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"{gone}.md5: not kept beside {gone}" in first.stderr
    assert (dest / gone).read_bytes() == pubmed[1][gone]
    assert not (dest / (gone + ".md5")).exists()
    assert (dest / corrupted).read_bytes() != pubmed[1][corrupted]  # what the server sent
    assert all(md5 is None for name, (_, _, md5) in manifest_rows(dest).items()
               if name in NAMES)
    before = data_retrs(server)
    second = mirror_cmd(server, dest)
    assert second.returncode == 0, second.stdout + second.stderr
    assert data_retrs(server) == before + 1  # only the corrupted copy came again
    assert (dest / corrupted).read_bytes() == pubmed[1][corrupted]
    rows = manifest_rows(dest)
    for name, data in pubmed[1].items():
        assert rows[name][2] == hashlib.md5(data).hexdigest()
    assert (dest / (gone + ".md5")).read_bytes() == md5_line(gone, pubmed[1][gone])


def test_no_verify_drops_the_old_checksum_file_it_could_not_replace(
        server: FaultyFTPServer, pubmed: PubMed, dest: Path) -> None:
    """--no-verify, a new version of NAME whose new NAME.md5 cannot be fetched: NAME is
    replaced, and the NAME.md5 of the version before goes with its record (it no longer
    says what NAME is: `verify` would call the new file corrupt)."""
    name = NAMES[1]
    assert mirror_cmd(server, dest).returncode == 0
    assert (dest / (name + ".md5")).read_bytes() == md5_line(name, pubmed[1][name])
    new = os.urandom(len(pubmed[1][name]) + 10)
    publish(pubmed[0], {name: new}, mtime=MTIME + 86400)
    server.faults.add(name + ".md5", Fault(kind="reply", reply="550 No such file"))
    result = mirror_cmd(server, dest, "--no-verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name}.md5: not kept beside {name}" in result.stderr
    assert (dest / name).read_bytes() == new
    assert not (dest / (name + ".md5")).exists()
    assert name + ".md5" not in manifest_rows(dest)
    checked = run("verify", str(dest))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_files_verify_finds_good_are_verified_for_the_dataset(
        server: FaultyFTPServer, pubmed: PubMed, dest: Path) -> None:
    """A --no-verify mirror leaves its files unverified (status exit 1: an MD5 is there to
    check them); once `verify` has found them good they are verified, for `status` as for
    `load-order`. Before, only a mirror run could make them so."""
    assert mirror_cmd(server, dest, "--no-verify").returncode == 0
    before = json.loads(run("status", str(dest), "--json").stdout.splitlines()[0])
    assert (before["unverified"], before["complete"]) == (len(NAMES), False)
    assert run("verify", str(dest)).returncode == 0
    after = run("status", str(dest), "--json")
    assert after.returncode == 0, after.stdout
    status = json.loads(after.stdout.splitlines()[0])
    assert (status["unverified"], status["verified"]) == (0, len(NAMES))
    order = run("load-order", str(dest), str(dest), "--json")
    assert order.returncode == 0, order.stdout + order.stderr


# -- verify on odd destinations, and output that goes away -----------------------------------


def read_only(dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command with DEST bind-mounted read-only (a private mount namespace)."""
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(dest), *command(),
                           *args], capture_output=True, text=True, timeout=60, check=False)
    if "unshare failed" in done.stderr or "mount: " in done.stderr:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    return done


def test_verify_and_dry_run_work_on_a_read_only_dest(server: FaultyFTPServer,
                                                     dest: Path) -> None:
    """A read-only copy can still be verified (and planned): nothing is written to it."""
    assert mirror_cmd(server, dest).returncode == 0
    clean = read_only(dest, "verify", str(dest))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"{len(NAMES)} match their MD5" in clean.stdout
    plan = read_only(dest, "mirror", server.url, "--dest", str(dest), "--dry-run",
                     "--include", "*.xml.gz")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"{len(NAMES)} up to date" in plan.stdout
    victim = dest / NAMES[1]
    victim.write_bytes(b"\0" + victim.read_bytes()[1:])
    found = read_only(dest, "verify", str(dest))
    assert found.returncode == 1 and f"CORRUPT  {NAMES[1]}" in found.stdout
    assert "Traceback" not in found.stderr
    with (dest / ".pubmed-mirror" / "lock").open("r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a mirror is running
        busy = read_only(dest, "verify", str(dest))
    assert busy.returncode == 2 and "being mirrored into" in busy.stderr


def test_verify_refuses_while_a_mirror_holds_dest(server: FaultyFTPServer, dest: Path) -> None:
    """verify does not race a running mirror: it says so and exits 2."""
    assert mirror_cmd(server, dest).returncode == 0
    with (dest / ".pubmed-mirror" / "lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run("verify", str(dest))
    assert result.returncode == 2
    assert "being mirrored into by another pubmed-mirror" in result.stderr


def test_verify_names_a_directory_where_a_file_should_be(server: FaultyFTPServer,
                                                         dest: Path) -> None:
    """A directory in place of a data file is a corrupt file, named in one line."""
    assert mirror_cmd(server, dest).returncode == 0
    (dest / NAMES[2]).unlink()
    (dest / NAMES[2]).mkdir()
    result = run("verify", str(dest))
    assert result.returncode == 1
    assert f"CORRUPT  {NAMES[2]}" in result.stdout and "Traceback" not in result.stderr


def test_closed_stdout_stops_the_mirror_quietly(pubmed: PubMed, dest: Path) -> None:
    """`--json | head -1`: the reader leaves, the mirror stops with exit 1 and no traceback,
    and what it received is kept for the next run."""
    with FaultyFTPServer(pubmed[0], rate_per_connection=400_000) as slow:
        proc = subprocess.Popen([*command(), "mirror", slow.url, "--dest", str(dest),
                                 "--include", "*.xml.gz", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["event"] == "listing_done"
        time.sleep(1.0)
        proc.stdout.close()
        assert proc.wait(timeout=20) == 1
        assert b"Traceback" not in proc.stderr.read()
        proc.stderr.close()
        parts = {p.name.removesuffix(".part"): p.stat().st_size for p in dest.iterdir()
                 if p.name.endswith(".part") and p.stat().st_size > 0}
        assert parts  # ~1 s at 400 KB/s per connection: every transfer had started
        rerun = mirror_cmd(slow, dest, "--json", timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    started = {e["name"]: e["offset"] for e in map(json.loads, rerun.stdout.splitlines())
               if e["event"] == "file_started"}
    for name, length in parts.items():
        assert started[name] == length
    for name, data in pubmed[1].items():
        assert (dest / name).read_bytes() == data


def test_interrupted_json_run_keeps_stdout_machine_readable(pubmed: PubMed,
                                                            dest: Path) -> None:
    """With --json, every stdout line is JSON even when interrupted; the notice is on stderr."""
    with FaultyFTPServer(pubmed[0], rate_per_connection=400_000) as slow:
        proc = subprocess.Popen([*command(), "mirror", slow.url, "--dest", str(dest),
                                 "--include", "*.xml.gz", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert all(json.loads(line) for line in out.splitlines())
    assert "interrupted" in err


def test_demo_dest_that_is_a_file_is_bad_usage(tmp_path: Path) -> None:
    """demo --dest naming a file: one line, exit 2, before the server starts."""
    (tmp_path / "f").write_text("a file")
    result = run("demo", "--dest", str(tmp_path / "f"))
    assert result.returncode == 2 and "not writable" in result.stderr
