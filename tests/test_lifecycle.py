"""The dataset's lifecycle: guarded deletion (`--delete`, `--max-delete`) and PubMed's yearly
changeover, driven through the installed command against pyftpdlib on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import _random_bytes
from pubmed_mirror import Manifest
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import command, run


def write_year(root: Path, year: int, numbers: range, size: int = 200_000) -> dict[str, bytes]:
    """PubMed files of `year` with NCBI's NAME.md5 beside each; returns every file written."""
    root.mkdir(parents=True, exist_ok=True)
    written = {}
    for number in numbers:
        name = f"pubmed{year % 100:02d}n{number:04d}.xml.gz"
        data = _random_bytes(size + number, year * 10_000 + number)
        md5 = f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()
        (root / name).write_bytes(data)
        (root / f"{name}.md5").write_bytes(md5)
        written |= {name: data, f"{name}.md5": md5}
    return written


def clear(root: Path) -> None:
    for path in root.iterdir():
        path.unlink()


def held(dest: Path) -> set[str]:
    return {p.name for p in dest.iterdir() if p.is_file()}


def events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_changeover_survives_an_interrupt_and_retires_the_old_year(tmp_path: Path) -> None:
    """2026 mirrored; the server switches to 2027: a run interrupted half way leaves 2026
    whole (load-order still gives it, status shows 2027 incoming); the rerun with --delete
    completes 2027 and only then removes 2026 (more than --max-delete's 50%, which does not
    apply to a changeover); then status exits 0 and load-order gives 2027."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    old = write_year(root, 2026, range(1, 5))
    with FaultyFTPServer(root, rate_per_connection=1_000_000) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        clear(root)
        new = write_year(root, 2027, range(1, 5), size=1_000_000)
        proc = subprocess.Popen([*command(), "mirror", server.url, "--dest", str(dest),
                                 "--delete", "--concurrency", "2", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not (dest / "pubmed27n0002.xml.gz").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert held(dest) >= set(old)  # the old year is whole and untouched
        for name, data in old.items():
            assert (dest / name).read_bytes() == data
        assert not set(new) <= held(dest)  # the new one was not complete
        assert any(e.get("event") == "baseline_changed" and e["new"] == 2027
                   for e in events(out))
        during = run("load-order", str(dest), str(dest), "--json")
        assert [e["name"] for e in events(during.stdout)[:-1]] == sorted(
            n for n in old if n.endswith(".gz"))  # a loader still gets the whole old year
        status = events(run("status", str(dest), "--json").stdout)[0]
        assert (status["current_year"], status["incoming_year"]) == (2026, 2027)
        rerun = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
    assert rerun.returncode == 0, rerun.stderr
    after = run("status", str(dest), "--json")
    assert after.returncode == 0, after.stdout
    assert events(after.stdout)[0]["current_year"] == 2027
    order = run("load-order", str(dest), str(dest), "--json")
    assert order.returncode == 0, order.stderr
    assert [e["name"] for e in events(order.stdout)[:-1]] == sorted(
        n for n in new if n.endswith(".gz"))
    assert held(dest) == set(new)
    for name, data in new.items():
        assert (dest / name).read_bytes() == data
    deleted = [e for e in events(rerun.stdout) if e.get("event") == "file_deleted"]
    assert sorted(e["name"] for e in deleted) == sorted(n for n in old if n.endswith(".gz"))
    assert all("superseded" in str(e["reason"]) for e in deleted)
    with Manifest.open(dest, create=False) as manifest:
        assert {row.name for row in manifest.entries()} == set(new)


def test_changeover_without_delete_keeps_and_reports_the_old_year(tmp_path: Path) -> None:
    """Without --delete the complete new year leaves the old one in place, reported as
    superseded, and a changed year is never fetched into the old one's place."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    old = write_year(root, 2026, range(1, 4))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        new = write_year(root, 2027, range(1, 4))  # both years listed, as NCBI may for a day
        result = run("mirror", server.url, "--dest", str(dest), "--json")
        retr = server.stats.retr
    assert result.returncode == 0, result.stderr
    assert held(dest) == set(old) | set(new)
    summary = events(result.stdout)[-1]
    assert sorted(summary["superseded"]) == sorted(n for n in old if n.endswith(".gz"))
    assert summary["deleted"] == []
    assert all(retr[name] == 1 for name in old)  # the old year was not fetched again


def test_both_years_listed_and_the_old_one_deleted_is_a_complete_dataset(tmp_path: Path
                                                                         ) -> None:
    """NCBI listing both years for a while: --delete retires the old one, and status finds
    DEST complete (the old year's listed files are not 'missing': they are superseded)."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    old = write_year(root, 2026, range(1, 4))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        new = write_year(root, 2027, range(1, 4))
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "-q")
    assert result.returncode == 0, result.stderr
    assert held(dest) == set(new) and not set(old) & held(dest)
    status = run("status", str(dest), "--json")
    assert status.returncode == 0, status.stdout


@pytest.mark.parametrize(("keep", "limit", "why"), [
    (0, None, "listing holds no file"),
    (2, None, "more than --max-delete 50%"),
    (7, "2", "more than --max-delete 2"),
])
def test_guards_refuse_and_delete_nothing(tmp_path: Path, keep: int, limit: str | None,
                                          why: str) -> None:
    """An emptied listing, a listing shrunk by 80%, or more than --max-delete N gone:
    exit 1, one line saying why, every file still there."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    files = write_year(root, 2026, range(1, 11))
    (dest).mkdir()
    (dest / "notes.txt").write_text("mine")  # put there by hand: never ours to delete
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        for number in range(keep + 1, 11):
            (root / f"pubmed26n{number:04d}.xml.gz").unlink()
            (root / f"pubmed26n{number:04d}.xml.gz.md5").unlink()
        extra = ["--max-delete", limit] if limit else []
        result = run("mirror", server.url, "--dest", str(dest), "--delete", *extra)
    assert result.returncode == 1
    assert why in result.stderr or why in result.stdout, result.stdout + result.stderr
    assert held(dest) == set(files) | {"notes.txt"}


def test_delete_within_the_limit_removes_exactly_the_recorded_files_gone(tmp_path: Path
                                                                         ) -> None:
    """With the limit raised, the files gone from the listing go with their NAME.md5 and
    manifest rows; the hand-placed file stays; the dry run said so first."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    files = write_year(root, 2026, range(1, 11))
    dest.mkdir()
    (dest / "notes.txt").write_text("mine")
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        for number in range(3, 11):
            (root / f"pubmed26n{number:04d}.xml.gz").unlink()
        gone = {f"pubmed26n{n:04d}.xml.gz" for n in range(3, 11)}
        dry = run("mirror", server.url, "--dest", str(dest), "--delete", "--max-delete", "80%",
                  "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        assert {d["name"] for d in json.loads(dry.stdout)["delete"]} == gone
        assert held(dest) == set(files) | {"notes.txt"}  # a dry run deletes nothing
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "--max-delete",
                     "80%", "--json")
    assert result.returncode == 0, result.stderr
    kept = {n for n in files if not any(n.startswith(g) for g in gone)}
    assert held(dest) == kept | {"notes.txt"}
    assert {e["name"] for e in events(result.stdout) if e.get("event") == "file_deleted"} == gone
    with Manifest.open(dest, create=False) as manifest:
        assert {row.name for row in manifest.entries()} == kept


def test_a_deletion_cut_short_is_finished_by_the_next_run(tmp_path: Path) -> None:
    """A run killed between removing a file and its manifest row (the row left, the file
    gone): the next --delete run removes the row, and status of disk and manifest agree."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    write_year(root, 2026, range(1, 5))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        (root / "pubmed26n0004.xml.gz").unlink()
        (root / "pubmed26n0004.xml.gz.md5").unlink()
        (dest / "pubmed26n0004.xml.gz").unlink()  # what the killed run had done
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
    assert result.returncode == 0, result.stderr
    assert "pubmed26n0004.xml.gz.md5" not in held(dest)
    with Manifest.open(dest, create=False) as manifest:
        names = {row.name for row in manifest.entries()}
    assert "pubmed26n0004.xml.gz" not in names and "pubmed26n0004.xml.gz.md5" not in names


@pytest.mark.parametrize("value", ["lots", "-1", "150%", "%", "nan%"])
def test_a_bad_max_delete_is_a_usage_error(tmp_path: Path, value: str) -> None:
    """--max-delete takes a count or a percentage: anything else is exit 2 in one line."""
    result = run("mirror", "ftp://127.0.0.1:1/", "--dest", str(tmp_path / "d"), "--delete",
                 "--max-delete", value)
    assert result.returncode == 2
    assert "--max-delete" in result.stderr and not (tmp_path / "d").exists()


def test_delete_removes_the_part_of_a_file_gone_before_it_was_whole(tmp_path: Path) -> None:
    """A run cut short keeps NAME.part to resume; the server then removes NAME: `--delete`
    removes the part with its record (before, it stayed for good, and `status` called it
    extra at every run). A part of a file still listed stays for the next run."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    files = write_year(root, 2026, range(1, 5))
    cut = ("pubmed26n0003.xml.gz", "pubmed26n0004.xml.gz")
    with FaultyFTPServer(root) as server:
        for name in cut:
            server.faults.add(name, Fault(kind="close_426", after_bytes=100_000))
        first = run("mirror", server.url, "--dest", str(dest), "--retries", "0")
        assert first.returncode == 1, first.stderr
        assert {p.name for p in dest.glob("*.part")} == {f"{n}.part" for n in cut}
        (root / cut[1]).unlink()
        (root / f"{cut[1]}.md5").unlink()
        (dest / "thesis.part").write_bytes(b"the user's own\n")  # no record: not ours
        server.faults.add(cut[0], Fault(kind="close_426", after_bytes=100_000))
        second = run("mirror", server.url, "--dest", str(dest), "--retries", "0", "--delete",
                     "--max-delete", "100%")
        assert second.returncode == 1, second.stderr  # cut[0] cut short again
        assert {p.name for p in dest.glob("*.part")} == {f"{cut[0]}.part", "thesis.part"}
        assert len(list((dest / ".pubmed-mirror").rglob("*.meta"))) == 1  # cut[0]'s record
        third = run("mirror", server.url, "--dest", str(dest), "--delete")
    assert third.returncode == 0, third.stderr
    assert held(dest) == {n for n in files if not n.startswith(cut[1])} | {"thesis.part"}
    assert (dest / "thesis.part").read_bytes() == b"the user's own\n"
    (dest / "thesis.part").unlink()
    status = run("status", str(dest))
    assert status.returncode == 0, status.stdout + status.stderr


def test_delete_removes_the_part_of_a_nested_file_gone_before_it_was_whole(
        tmp_path: Path) -> None:
    """A nested name's part lives under the state directory, named by a key; its record
    names its file, so `--delete` removes the part of a nested file the server has since
    removed (before, it stayed for good), and not while the listing could not have shown
    that file (a shallower run); the part of one still listed is resumed."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    files = {"sub/a.bin": _random_bytes(300_000, 1), "sub/deep/b.bin": _random_bytes(300_000, 2),
             "sub/c.bin": _random_bytes(1000, 3)}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    parts = dest / ".pubmed-mirror" / "parts"
    with FaultyFTPServer(root) as server:
        for name in ("a.bin", "b.bin"):
            server.faults.add(name, Fault(kind="close_426", after_bytes=100_000))
        first = run("mirror", server.url, "--dest", str(dest), "--recursive", "--retries", "0")
        assert first.returncode == 1, first.stderr
        assert len(list(parts.glob("*.part"))) == len(list(parts.glob("*.meta"))) == 2
        (root / "sub/deep/b.bin").unlink()
        (root / "sub/deep").rmdir()
        shallow = run("mirror", server.url, "--dest", str(dest), "--recursive", "--max-depth",
                      "0", "--delete", "--max-delete", "100%")
        assert shallow.returncode == 0, shallow.stderr
        assert len(list(parts.glob("*.part"))) == 2  # sub/ was not entered: out of sight
        second = run("mirror", server.url, "--dest", str(dest), "--recursive", "--delete",
                     "--max-delete", "100%")
    assert second.returncode == 0, second.stdout + second.stderr
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
            if p.is_file() and ".pubmed-mirror" not in p.parts} == {
        n: d for n, d in files.items() if n != "sub/deep/b.bin"}
    assert list(parts.iterdir()) == []  # a.bin's finished, b.bin's removed
    status = run("status", str(dest))
    assert status.returncode == 0, status.stdout + status.stderr


def test_a_year_begun_does_not_retire_the_whole_one(tmp_path: Path) -> None:
    """2026's baseline mirrored; the server then lists the first file of 2027's beside it
    (an upload under way), and 2026 grows a file: the run fetches both, keeps every 2026
    file even with --delete, and status keeps 2026 as the current year. Before, the one
    2027 file retired 2026 whole (deleted as superseded), and 2026's new file was never
    fetched. Once 2027 is listed whole, it takes over."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    old = write_year(root, 2026, range(1, 5))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        grown = write_year(root, 2026, range(5, 6))
        begun = write_year(root, 2027, range(1, 2))
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert held(dest) == set(old) | set(grown) | set(begun)
        assert events(result.stdout)[-1]["deleted"] == []
        status = events(run("status", str(dest), "--json").stdout)[0]
        assert (status["current_year"], status["incoming_year"]) == (2026, 2027)
        whole = write_year(root, 2027, range(2, 6))
        done = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert held(dest) == set(begun) | set(whole)
    deleted = events(done.stdout)[-1]["deleted"]
    assert sorted(deleted) == sorted(n for n in (*old, *grown) if n.endswith(".gz"))


def test_an_update_year_takes_over_once_the_old_updates_are_gone(tmp_path: Path) -> None:
    """A stray update of a year to come (pubmed27n0002, with its .md5) beside 2026's
    updates retires nothing (before, it took all five); a new year's first update while
    NCBI removes the old year's (pubmed27n0016 after 2026's n0011-n0015) retires them once
    it is final (with --delete, removed)."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    old = write_year(root, 2026, range(11, 16))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        stray = write_year(root, 2027, range(2, 3))
        kept = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
        assert kept.returncode == 0, kept.stdout + kept.stderr
        assert events(kept.stdout)[-1]["deleted"] == []
        assert not any(e.get("event") == "baseline_changed" for e in events(kept.stdout))
        assert held(dest) == set(old) | set(stray)
        clear(root)
        new = write_year(root, 2027, range(16, 17))
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "--max-delete",
                     "100%", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert held(dest) == set(new)


def test_a_stray_file_of_a_year_to_come_retires_nothing_and_hides_nothing(
        tmp_path: Path) -> None:
    """A stray pubmed27n0002 beside a whole 2026 baseline (numbered above 1, so not a
    baseline's start, nor, in a baseline's directory, an update): --delete keeps 2026 and
    status keeps it current; a first mirror of such a listing fetches 2026 whole (before,
    it fetched the stray alone, and later runs never fetched 2026)."""
    root = tmp_path / "remote"
    old = write_year(root, 2026, range(1, 5))
    stray = write_year(root, 2027, range(2, 3))
    with FaultyFTPServer(root) as server:
        first = run("mirror", server.url, "--dest", str(tmp_path / "first"), "--json")
        kept = tmp_path / "kept"
        clear(root)
        write_year(root, 2026, range(1, 5))
        assert run("mirror", server.url, "--dest", str(kept), "-q").returncode == 0
        write_year(root, 2027, range(2, 3))
        again = run("mirror", server.url, "--dest", str(kept), "--delete", "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert held(tmp_path / "first") == set(old) | set(stray)
    assert again.returncode == 0, again.stdout + again.stderr
    assert events(again.stdout)[-1]["deleted"] == []
    assert held(kept) == set(old) | set(stray)
    status = events(run("status", str(kept), "--json").stdout)[0]
    assert (status["current_year"], status["incoming_year"]) == (2026, 2027)


def test_a_new_year_listed_whole_is_fetched_alone(tmp_path: Path) -> None:
    """DEST holds part of 2026; the listing holds the rest of 2026 and all of 2027 (a
    larger baseline): 2027 is fetched, 2026's missing files are not (they would be
    superseded in the same run), and with --delete 2026 goes once 2027 is whole."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    write_year(root, 2026, range(1, 3))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        write_year(root, 2026, range(3, 5))
        new = write_year(root, 2027, range(1, 6))
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
        retr = server.stats.retr
    assert result.returncode == 0, result.stdout + result.stderr
    assert held(dest) == set(new)
    assert retr.get("pubmed26n0003.xml.gz", 0) == retr.get("pubmed26n0004.xml.gz", 0) == 0


@pytest.mark.parametrize("upload", ["hole", "md5 to come"])
def test_a_new_year_still_uploading_retires_nothing(tmp_path: Path, upload: str) -> None:
    """The next baseline listed whole in number but with a hole (n0006 not up yet), or
    with one file's NAME.md5 not up yet: its files are fetched, the complete 2026 stays
    and stays current. Before, either retired 2026, and DEST had no complete year."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    old = write_year(root, 2026, range(1, 11))
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "-q").returncode == 0
        if upload == "hole":
            write_year(root, 2027, [*range(1, 6), *range(7, 12)])
        else:
            write_year(root, 2027, range(1, 12))
            (root / "pubmed27n0011.xml.gz.md5").unlink()
        result = run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert events(result.stdout)[-1]["deleted"] == []
    assert set(old) <= held(dest)
    status = events(run("status", str(dest), "--json").stdout)[0]
    assert status["current_year"] == 2026


def test_an_old_year_held_in_part_is_replaced_once_the_server_drops_it(tmp_path: Path
                                                                       ) -> None:
    """A DEST holding the last files of 2026 (--newest 3) or 2026's baseline and updates
    in one directory: once the server lists 2027 alone, 2027 becomes current and 2026 goes
    with --delete. Before, 2026 was taken for update files and stayed current for good."""
    root = tmp_path / "remote"
    write_year(root, 2026, range(1, 16))
    with FaultyFTPServer(root) as server:
        for dest, extra in ((tmp_path / "newest", ["--newest", "3"]),
                            (tmp_path / "both", [])):
            assert run("mirror", server.url, "--dest", str(dest), *extra).returncode == 0
        clear(root)
        new = write_year(root, 2027, range(1, 13))
        results = [run("mirror", server.url, "--dest", str(dest), "--delete", "--json")
                   for dest in (tmp_path / "newest", tmp_path / "both")]
    for dest, result in zip((tmp_path / "newest", tmp_path / "both"), results, strict=True):
        assert result.returncode == 0, result.stdout + result.stderr
        assert held(dest) == set(new)
        status = events(run("status", str(dest), "--json").stdout)[0]
        assert (status["current_year"], status["complete"]) == (2027, True)
