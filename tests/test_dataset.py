"""DEST as a dataset: `status`, `load-order` and `ack`, run as the installed command against
FaultyFTPServer on 127.0.0.1 (a PubMed-shaped baseline and updatefiles tree, faults in the
server), and the library functions beside them."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import tmpfs
from pubmed_mirror import (
    DatasetError,
    MirrorOptions,
    acknowledge,
    consumer_cursor,
    dataset_status,
    load_order,
    mirror,
)
from pubmed_mirror._pubmed import pubmed_name, pubmed_number, pubmed_year
from pubmed_mirror._state import Manifest
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import command, run
from test_pubmed_command import publish

BASELINE_26 = [f"pubmed26n{i:04d}.xml.gz" for i in range(1, 5)]
UPDATES_26 = [f"pubmed26n{i:04d}.xml.gz" for i in range(5, 9)]
BASELINE_27 = [f"pubmed27n{i:04d}.xml.gz" for i in range(1, 6)]  # (larger, as each year's is)
REFUSED = Fault(kind="reply", reply="550 Permission denied")


def content(name: str, size: int = 30_000) -> bytes:
    """Reproducible bytes, different for each name."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class Remote:
    """The server's tree: baseline/ and updatefiles/, each file with its NAME.md5."""

    root: Path

    def publish(self, directory: str, names: list[str]) -> None:
        publish(self.root / directory, {n: content(n) for n in names})

    def remove(self, directory: str, names: list[str]) -> None:
        for name in names:
            (self.root / directory / name).unlink()
            (self.root / directory / (name + ".md5")).unlink()

    def new_baseline(self) -> None:
        """NCBI's December: the 2027 baseline replaces the 2026 one on the server."""
        self.remove("baseline", BASELINE_26)
        self.publish("baseline", BASELINE_27)


def make_remote(root: Path) -> Remote:
    tree = Remote(root)
    for directory in ("baseline", "updatefiles"):
        (tree.root / directory).mkdir(parents=True)
    tree.publish("baseline", BASELINE_26)
    tree.publish("updatefiles", UPDATES_26)
    (tree.root / "updatefiles" / "README.txt").write_text("not a data file\n")
    return tree


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return make_remote(tmp_path / "remote")


@pytest.fixture
def server(remote: Remote) -> Iterator[FaultyFTPServer]:
    with FaultyFTPServer(remote.root) as running:
        yield running


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "baseline"


@pytest.fixture
def upd(tmp_path: Path) -> Path:
    return tmp_path / "updatefiles"


def mirror_dir(server: FaultyFTPServer, directory: str, dest: Path,
               *extra: str) -> subprocess.CompletedProcess[str]:
    return run("mirror", f"{server.url}{directory}/", "--dest", str(dest), "--include",
               "*.xml.gz", "--retries", "1", "-q", *extra)


def mirror_both(server: FaultyFTPServer, base: Path, upd: Path) -> None:
    assert mirror_dir(server, "baseline", base).returncode == 0
    assert mirror_dir(server, "updatefiles", upd).returncode == 0


def status_json(*dests: Path) -> tuple[int, list[dict[str, Any]]]:
    result = run("status", *map(str, dests), "--json")
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


def order_json(base: Path, upd: Path, *extra: str
               ) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """load-order --json: exit code, the file objects, the last line."""
    result = run("load-order", str(base), str(upd), "--json", *extra)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines, result.stderr
    return result.returncode, lines[:-1], lines[-1]


def names_of(files: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in files]


def cursors(dest: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(dest / ".pubmed-mirror" / "manifest.sqlite") as db:
        return db.execute("SELECT consumer, year, through, updated FROM cursors").fetchall()


# -- status ---------------------------------------------------------------------------------------


def test_status_of_complete_mirrors(server: FaultyFTPServer, base: Path, upd: Path) -> None:
    """Two complete DESTs: exit 0 and one JSON object each with the design's keys and counts."""
    mirror_both(server, base, upd)
    code, objects = status_json(base, upd)
    assert code == 0
    assert [o["dest"] for o in objects] == [str(base), str(upd)]
    for obj in objects:
        assert set(obj) == {"dest", "years", "current_year", "incoming_year", "final",
                            "verified", "missing", "superseded", "extra", "bad", "unverified",
                            "gaps", "last_run", "complete"}
        assert obj["years"] == [2026] and obj["current_year"] == 2026
        assert obj["incoming_year"] is None and obj["gaps"] == []
        assert (obj["final"], obj["verified"]) == (4, 4)
        assert obj["missing"] == obj["superseded"] == obj["extra"] == obj["bad"] == 0
        assert obj["unverified"] == 0 and obj["complete"] is True
        assert obj["last_run"]["outcome"] == "ok"
        assert obj["last_run"]["started"] <= obj["last_run"]["finished"] <= time.time()
    text = run("status", str(base))
    assert text.returncode == 0 and f"{base}: complete" in text.stdout
    assert "4 final, 4 verified, 0 missing" in text.stdout


def test_hand_placed_file_is_extra(server: FaultyFTPServer, base: Path) -> None:
    """A file put into DEST by hand is extra: status exit 1 naming it; a part of a known
    file and our state directory are not extra."""
    assert mirror_dir(server, "baseline", base).returncode == 0
    (base / "notes.txt").write_text("mine\n")
    (base / f"{BASELINE_26[0]}.part").write_bytes(b"x")
    code, [obj] = status_json(base)
    assert code == 1 and obj["extra"] == 1 and obj["complete"] is False
    text = run("status", str(base))
    assert text.returncode == 1
    assert "INCOMPLETE: 1 extra" in text.stdout and "extra: notes.txt" in text.stdout


def test_listing_is_the_selection_not_the_run_cut(server: FaultyFTPServer, remote: Remote,
                                                  base: Path) -> None:
    """--newest 2 mirrors two files, yet the dataset's listing holds all four (2 missing);
    a --dry-run that sees a new file does not replace the listing."""
    assert mirror_dir(server, "baseline", base, "--newest", "2").returncode == 0
    code, [obj] = status_json(base)
    assert code == 1 and (obj["final"], obj["missing"]) == (2, 2)
    assert "missing: pubmed26n0001.xml.gz, pubmed26n0002.xml.gz" in run(
        "status", str(base)).stdout
    assert mirror_dir(server, "baseline", base).returncode == 0
    remote.publish("baseline", ["pubmed26n0005.xml.gz"])
    assert mirror_dir(server, "baseline", base, "--dry-run").returncode == 0
    code, [obj] = status_json(base)
    assert code == 0 and (obj["final"], obj["missing"]) == (4, 0)


@pytest.mark.parametrize("ending", ["interrupted", "error"])
def test_last_run_outcome_is_recorded(remote: Remote, server: FaultyFTPServer, base: Path,
                                      ending: str) -> None:
    """A run interrupted with SIGINT, or whose listing fails (550), is the last run with
    that outcome: status exit 1; the listing stays the last successful one's."""
    assert mirror_dir(server, "baseline", base).returncode == 0
    remote.publish("baseline", ["pubmed26n0005.xml.gz", "pubmed26n0006.xml.gz"])
    if ending == "error":
        result = mirror_dir(server, "no-such-directory", base)
        assert result.returncode == 1
    else:
        with FaultyFTPServer(remote.root, rate_per_connection=20_000) as slow:
            proc = subprocess.Popen([*command(), "mirror", f"{slow.url}baseline/", "--dest",
                                     str(base), "--include", "*.xml.gz", "--json"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            assert json.loads(proc.stdout.readline())["event"] == "listing_done"
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=20)
        assert proc.returncode == 130
    code, [obj] = status_json(base)
    assert code == 1 and obj["last_run"]["outcome"] == ending
    assert obj["last_run"]["finished"] >= obj["last_run"]["started"]
    # the interrupted run listed 6 files; the failed listing left the previous one
    assert obj["missing"] == (2 if ending == "interrupted" else 0)
    assert f"last run: {ending}" in run("status", str(base)).stdout


# -- load order -----------------------------------------------------------------------------------


def test_load_order_is_baseline_then_updates(server: FaultyFTPServer, base: Path,
                                             upd: Path) -> None:
    """The 4 baseline files then the 4 update files, ascending, absolute paths with their
    MD5, year and number; exit 0, "complete"."""
    mirror_both(server, base, upd)
    code, files, last = order_json(base, upd)
    assert code == 0
    assert names_of(files) == BASELINE_26 + UPDATES_26
    for f, dest in zip(files, [base] * 4 + [upd] * 4, strict=True):
        assert f["path"] == str(dest / f["name"]) and f["dest"] == str(dest)
        assert f["md5"] == hashlib.md5(content(f["name"])).hexdigest()
        assert (f["year"], f["number"]) == (2026, pubmed_number(f["name"]))
    assert last == {"complete": True, "stopped_at": None, "reason": None, "reload": False,
                    "consumer": None}
    text = run("load-order", str(base), str(upd))
    assert text.returncode == 0
    assert text.stdout.splitlines() == [str(base / n) for n in BASELINE_26] + [
        str(upd / n) for n in UPDATES_26]
    assert text.stderr.strip() == "complete"


@pytest.mark.parametrize("how", ["refused", "absent"])
def test_load_order_stops_at_a_missing_update(server: FaultyFTPServer, remote: Remote,
                                              base: Path, upd: Path, how: str) -> None:
    """An update file the server refuses with 550 (missing) or never lists (a gap): load-order
    stops at it with the reason, exit 1; status exit 1 naming it; once it is mirrored,
    both are complete."""
    hole = UPDATES_26[1]
    if how == "refused":
        server.faults.add(hole, REFUSED)
    else:
        remote.remove("updatefiles", [hole])
    assert mirror_dir(server, "baseline", base).returncode == 0
    assert mirror_dir(server, "updatefiles", upd).returncode == (1 if how == "refused" else 0)
    code, files, last = order_json(base, upd)
    assert code == 1 and names_of(files) == BASELINE_26 + UPDATES_26[:1]
    assert last["complete"] is False and last["stopped_at"] == hole
    assert last["reason"].startswith("missing" if how == "refused" else "a gap")
    text = run("load-order", str(base), str(upd))
    assert text.returncode == 1 and len(text.stdout.splitlines()) == 5
    assert text.stderr.startswith(f"stopped at {hole}: ")
    code, [obj] = status_json(upd)
    assert code == 1 and obj["complete"] is False
    assert (obj["missing"], obj["gaps"]) == ((1, []) if how == "refused" else (0, [hole]))
    kind = "missing" if how == "refused" else "gaps"
    assert f"{kind}: {hole}" in run("status", str(upd)).stdout
    if how == "absent":
        remote.publish("updatefiles", [hole])
    assert mirror_dir(server, "updatefiles", upd).returncode == 0
    assert order_json(base, upd)[0] == 0 and status_json(upd)[0] == 0


# -- consumers ------------------------------------------------------------------------------------


def test_consumer_cursor_across_runs(server: FaultyFTPServer, remote: Remote, base: Path,
                                     upd: Path) -> None:
    """After `ack --through` 0006 the consumer's load order is 0007, 0008; a run that adds
    0009 leaves the cursor where it was and the consumer gets 0007-0009; another consumer
    still gets everything."""
    mirror_both(server, base, upd)
    acked = run("ack", str(upd), "--consumer", "loader", "--through", UPDATES_26[1])
    assert acked.returncode == 0, acked.stderr
    assert f"acknowledged through {UPDATES_26[1]}" in acked.stdout
    code, files, last = order_json(base, upd, "--consumer", "loader")
    assert code == 0 and names_of(files) == UPDATES_26[2:]
    assert last["complete"] is True and last["consumer"] == "loader" and not last["reload"]
    before = cursors(upd)
    remote.publish("updatefiles", ["pubmed26n0009.xml.gz"])
    assert mirror_dir(server, "updatefiles", upd).returncode == 0
    assert cursors(upd) == before
    code, files, _ = order_json(base, upd, "--consumer", "loader")
    assert names_of(files) == [*UPDATES_26[2:], "pubmed26n0009.xml.gz"]
    text = run("load-order", str(base), str(upd), "--consumer", "loader")
    assert text.stdout.splitlines()[0] == str(upd / UPDATES_26[2])
    # the path load-order printed is taken as FILE too
    assert run("ack", str(upd), "--consumer", "loader", "--through",
               str(upd / "pubmed26n0009.xml.gz")).returncode == 0
    code, files, last = order_json(base, upd, "--consumer", "loader")
    assert (code, files, last["complete"]) == (0, [], True)
    assert len(order_json(base, upd, "--consumer", "other")[1]) == 9


@pytest.fixture(scope="module")
def acked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A baseline DEST and an updates DEST whose 0007 the server refused (550), consumer
    "c" acknowledged through 0006. Shared: the tests using it must change nothing."""
    tmp = tmp_path_factory.mktemp("acked")
    with FaultyFTPServer(make_remote(tmp / "remote").root) as server:
        server.faults.add(UPDATES_26[2], REFUSED)
        assert mirror_dir(server, "baseline", tmp / "baseline").returncode == 0
        assert mirror_dir(server, "updatefiles", tmp / "updatefiles").returncode == 1
    assert run("ack", str(tmp / "updatefiles"), "--consumer", "c", "--through",
               UPDATES_26[1]).returncode == 0
    return tmp / "baseline", tmp / "updatefiles"


@pytest.mark.parametrize(("through", "message"), [
    ("README.txt", "not a PubMed data file name"),
    ("pubmed26n0007.xml.gz", "missing"),  # refused by the server
    ("pubmed26n0008.xml.gz", "it stops at pubmed26n0007.xml.gz"),  # after a missing file
    ("pubmed26n0099.xml.gz", "neither holds it nor is it a baseline file"),
    ("pubmed26n0005.xml.gz", "backwards"),  # the cursor is at 0006
    ("pubmed26n0003.xml.gz", "backwards"),  # a baseline file, before the cursor too
    ("pubmed62n0001.xml.gz", "no file of 2062 or of the year before"),  # a typo for 26
])
def test_ack_refuses_a_file_not_in_the_list(acked: tuple[Path, Path], through: str,
                                            message: str) -> None:
    """`ack --through` a file that is not in the consumer's list, or behind its cursor:
    one line, exit 2, the cursor unchanged."""
    upd = acked[1]
    before = cursors(upd)
    assert [row[2] for row in before] == [UPDATES_26[1]]
    result = run("ack", str(upd), "--consumer", "c", "--through", through)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr
    assert result.stderr.startswith("pubmed-mirror: error: ")
    assert cursors(upd) == before


def test_ack_takes_a_baseline_file(server: FaultyFTPServer, base: Path, upd: Path) -> None:
    """A baseline file numbered below the first update file is in the consumer's list: the
    consumer then gets the rest of the baseline and the updates."""
    mirror_both(server, base, upd)
    assert run("ack", str(upd), "--consumer", "c", "--through", BASELINE_26[1]).returncode == 0
    assert names_of(order_json(base, upd, "--consumer", "c")[1]) == BASELINE_26[2:] + UPDATES_26


@pytest.mark.parametrize("argv", [
    ["status", "{empty}"],
    ["status", "{base}", "{absent}"],
    ["load-order", "{empty}", "{base}"],
    ["load-order", "{base}", "{absent}"],
    ["ack", "{empty}", "--consumer", "c", "--through", BASELINE_26[0]],
    ["verify", "{absent}"],
])
def test_dest_without_a_mirror_is_bad_usage(acked: tuple[Path, Path], tmp_path: Path,
                                            argv: list[str]) -> None:
    """A DEST that holds no mirror (empty, or absent): one line, exit 2, nothing created."""
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "absent": tmp_path / "absent", "base": acked[0]}
    result = run(*(a.format(**paths) for a in argv))
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "holds no mirror" in result.stderr
    assert list((tmp_path / "empty").iterdir()) == [] and not (tmp_path / "absent").exists()


# -- the yearly changeover ------------------------------------------------------------------------


def test_new_baseline_year_makes_the_consumer_reload(server: FaultyFTPServer, remote: Remote,
                                                     base: Path, upd: Path) -> None:
    """The tree switches to pubmed27n and the new year is all mirrored: 2027 is current,
    2026 superseded (kept); the consumer at 2026's 0008 is told to reload and gets
    pubmed27n0001 on."""
    mirror_both(server, base, upd)
    assert run("ack", str(upd), "--consumer", "c", "--through", UPDATES_26[-1]).returncode == 0
    remote.new_baseline()
    assert mirror_dir(server, "baseline", base).returncode == 0
    code, [obj] = status_json(base)
    assert code == 0 and obj["complete"] is True
    assert (obj["years"], obj["current_year"], obj["incoming_year"]) == ([2026, 2027], 2027,
                                                                         None)
    assert (obj["superseded"], obj["final"], obj["missing"]) == (4, 9, 0)
    code, files, last = order_json(base, upd, "--consumer", "c")
    assert code == 0 and names_of(files) == BASELINE_27
    assert {f["dest"] for f in files} == {str(base)} and {f["year"] for f in files} == {2027}
    assert last["reload"] is True and last["complete"] is True
    text = run("load-order", str(base), str(upd), "--consumer", "c")
    assert "c must reload from the baseline" in text.stderr
    # once it has loaded the new baseline (no 2027 update yet), it acknowledges it
    assert run("ack", str(upd), "--consumer", "c", "--through", BASELINE_27[-1]).returncode == 0
    code, files, last = order_json(base, upd, "--consumer", "c")
    assert (code, files, last["reload"], last["complete"]) == (0, [], False, True)


def test_updates_of_a_newer_year_than_the_baseline_are_not_a_complete_order(
        server: FaultyFTPServer, remote: Remote, base: Path, upd: Path) -> None:
    """The 2027 baseline cannot be completed (a file keeps failing) while the updates
    DEST's 2027 takes over and retires 2026's updates (--delete): load-order gives the 2026
    baseline, but not as complete (exit 1), saying why; before, it said complete, and a
    loader took a baseline without its updates."""
    mirror_both(server, base, upd)
    remote.new_baseline()
    remote.remove("updatefiles", UPDATES_26)
    remote.publish("updatefiles", ["pubmed27n0006.xml.gz"])
    server.faults.add(BASELINE_27[1], REFUSED)
    assert mirror_dir(server, "baseline", base).returncode == 1
    assert mirror_dir(server, "updatefiles", upd, "--delete", "--max-delete",
                      "100%").returncode == 0
    code, files, last = order_json(base, upd)
    assert code == 1 and names_of(files) == BASELINE_26
    assert last["complete"] is False
    assert "holds no update file of 2026, only of 2027" in last["reason"]


def test_incomplete_new_year_keeps_the_old_one(server: FaultyFTPServer, remote: Remote,
                                               base: Path, upd: Path) -> None:
    """While a 2027 baseline file keeps failing, 2026 stays current (2027 incoming) and
    load-order still gives 2026's files; the consumer is not told to reload."""
    mirror_both(server, base, upd)
    assert run("ack", str(upd), "--consumer", "c", "--through", UPDATES_26[1]).returncode == 0
    remote.new_baseline()
    server.faults.add(BASELINE_27[1], REFUSED)
    assert mirror_dir(server, "baseline", base).returncode == 1
    code, [obj] = status_json(base)
    assert code == 1 and (obj["current_year"], obj["incoming_year"]) == (2026, 2027)
    assert (obj["missing"], obj["superseded"]) == (1, 0)
    assert "2027 incoming" in run("status", str(base)).stdout
    code, files, last = order_json(base, upd)
    assert code == 0 and names_of(files) == BASELINE_26 + UPDATES_26
    code, files, last = order_json(base, upd, "--consumer", "c")
    assert names_of(files) == UPDATES_26[2:] and last["reload"] is False


# -- beside a running mirror ----------------------------------------------------------------------


def test_status_and_load_order_beside_a_running_mirror(remote: Remote, server: FaultyFTPServer,
                                                       base: Path, upd: Path) -> None:
    """While a slow mirror writes UPDATES_DEST, status and load-order answer at once from
    what is committed (the run unfinished, the files so far); the mirror finishes
    undisturbed."""
    assert mirror_dir(server, "baseline", base).returncode == 0
    with FaultyFTPServer(remote.root, rate_per_connection=15_000) as slow:
        proc = subprocess.Popen([*command(), "mirror", f"{slow.url}updatefiles/", "--dest",
                                 str(upd), "--include", "*.xml.gz", "--json",
                                 "--concurrency", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if json.loads(line)["event"] == "file_done":
                break
        started = time.monotonic()
        code, [obj] = status_json(upd)
        order = order_json(base, upd)
        elapsed = time.monotonic() - started
        running = proc.poll() is None
        out, err = proc.communicate(timeout=30)
    assert running, "the mirror ended before status and load-order ran beside it"
    assert elapsed < 10
    assert code == 1 and obj["last_run"]["outcome"] is None and obj["final"] >= 1
    assert obj["missing"] == 4 - obj["final"]
    assert order[0] == 1 and names_of(order[1])[:5] == BASELINE_26 + UPDATES_26[:1]
    assert order[2]["reason"].startswith("missing")
    assert proc.returncode == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["done"] == 4 and summary["retries"] == 0
    for name in UPDATES_26:
        assert (upd / name).read_bytes() == content(name)
    assert status_json(upd)[0] == 0


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs of this test's own (root only: skipped otherwise unless CI=true)."""
    with tmpfs(tmp_path / "ro") as mount:
        yield mount


def test_read_only_dest(server: FaultyFTPServer, read_only_mount: Path) -> None:
    """On DESTs whose file system is read-only, status and load-order answer as usual and
    change nothing; ack says in one line that the cursor cannot be recorded (exit 1)."""
    base, upd = read_only_mount / "baseline", read_only_mount / "updatefiles"
    mirror_both(server, base, upd)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)],
                             capture_output=True, text=True, check=False)
    assert remount.returncode == 0, remount.stderr
    before = sorted(p.name for p in (upd / ".pubmed-mirror").iterdir())
    code, objects = status_json(base, upd)
    assert code == 0 and [o["complete"] for o in objects] == [True, True]
    code, files, last = order_json(base, upd)
    assert code == 0 and names_of(files) == BASELINE_26 + UPDATES_26 and last["complete"]
    acked = run("ack", str(upd), "--consumer", "c", "--through", UPDATES_26[0])
    assert acked.returncode == 1 and len(acked.stderr.splitlines()) == 1
    assert "read-only" in acked.stderr
    assert sorted(p.name for p in (upd / ".pubmed-mirror").iterdir()) == before


# -- the library ----------------------------------------------------------------------------------


async def test_library_status_load_order_and_cursor(server: FaultyFTPServer, base: Path,
                                                    upd: Path) -> None:
    """dataset_status, load_order, acknowledge and consumer_cursor over mirror()'s DESTs; a
    backwards ack or a DEST without a mirror raise DatasetError and change nothing."""
    options = MirrorOptions(include=("*.xml.gz",))
    assert (await mirror(f"{server.url}baseline/", base, options)).ok
    assert (await mirror(f"{server.url}updatefiles/", upd, options)).ok
    status = dataset_status(upd)
    assert status.complete and status.final == tuple(UPDATES_26)
    assert status.last_run is not None and status.last_run.outcome == "ok"
    assert status.last_run.source == f"{server.url}updatefiles/"
    order = load_order(base, upd)
    assert order.complete and [f.path for f in order.files] == [
        base.absolute() / n for n in BASELINE_26] + [upd.absolute() / n for n in UPDATES_26]
    assert consumer_cursor(upd, "lib") is None
    cursor = acknowledge(upd, "lib", UPDATES_26[0])
    assert consumer_cursor(upd, "lib") == cursor and cursor.year == 2026
    assert [f.name for f in load_order(base, upd, consumer="lib").files] == UPDATES_26[1:]
    with pytest.raises(DatasetError, match="backwards"):
        acknowledge(upd, "lib", BASELINE_26[0])
    assert consumer_cursor(upd, "lib") == cursor
    with pytest.raises(DatasetError, match="holds no mirror"):
        dataset_status(base.parent / "nothing")


def test_older_manifest_reads_its_new_tables_as_empty(tmp_path: Path) -> None:
    """A manifest from before the dataset tables, opened read-only, reads them as empty (and
    gets none); opened writable, it gets them."""
    dest = tmp_path / "old"
    (dest / ".pubmed-mirror").mkdir(parents=True)
    path = dest / ".pubmed-mirror" / "manifest.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE files (name TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                   "mtime REAL, md5 TEXT, fetched_at REAL NOT NULL, verified_at REAL)")
        for name in BASELINE_26:
            data = content(name)
            (dest / name).write_bytes(data)
            db.execute("INSERT INTO files VALUES (?, ?, NULL, ?, 0, 0)",
                       (name, len(data), hashlib.md5(data).hexdigest()))
    db.close()
    status = dataset_status(dest)
    assert status.current_year == 2026 and status.verified == tuple(BASELINE_26)
    assert status.last_run is None and status.missing == () and not status.complete
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {"files"}
    with Manifest.open(dest, create=False) as manifest:
        assert manifest.listing() == [] and manifest.last_run() is None
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.close()
    assert tables == {"files", "listing", "runs", "cursors", "facts"}


def test_pubmed_names() -> None:
    """Years and numbers come from PubMed data file names only, and make the name again."""
    assert (pubmed_year("pubmed26n0001.xml.gz"), pubmed_number("pubmed26n0001.xml.gz")) == (
        2026, 1)
    assert pubmed_number("pubmed27n1335.xml.gz") == 1335
    for other in ("pubmed26n0001.xml.gz.md5", "README.txt", "pubmed26n0001_stats.html",
                  "xpubmed26n0001.xml.gz"):
        assert pubmed_year(other) is None and pubmed_number(other) is None
    assert pubmed_name(2027, 12) == "pubmed27n0012.xml.gz"


@pytest.mark.parametrize("damage", ["removed", "corrupted"])
def test_damaged_local_copy_is_not_loaded(server: FaultyFTPServer, base: Path, upd: Path,
                                          damage: str) -> None:
    """A recorded file gone from DEST is missing, one `verify` found corrupt is bad:
    load-order stops at it saying so, status counts it and exits 1."""
    mirror_both(server, base, upd)
    victim = base / BASELINE_26[2]
    if damage == "removed":
        shutil.move(victim, base.parent / "elsewhere")
    else:
        victim.write_bytes(bytes(b ^ 1 for b in victim.read_bytes()))
        assert run("verify", str(base)).returncode == 1
    code, files, last = order_json(base, upd)
    assert code == 1 and names_of(files) == BASELINE_26[:2]
    assert last["stopped_at"] == BASELINE_26[2]
    assert last["reason"].startswith("missing" if damage == "removed" else "bad: ")
    code, [obj] = status_json(base)
    assert code == 1
    assert (obj["missing"], obj["bad"]) == ((1, 0) if damage == "removed" else (0, 1))
    assert obj["final"] == (3 if damage == "removed" else 4)


async def test_one_dest_holding_both(server: FaultyFTPServer, base: Path) -> None:
    """Given one DEST as both BASELINE and UPDATES, load_order lists its files once."""
    assert (await mirror(f"{server.url}baseline/", base,
                         MirrorOptions(include=("*.xml.gz",)))).ok
    order = load_order(base, base)
    assert order.complete and [f.name for f in order.files] == BASELINE_26
