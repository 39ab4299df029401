"""LIST lines in `ls --time-style=long-iso` and `full-iso` form, written by GNU ls for the
served directory and answered by a pyftpdlib server without MLSD, mirrored end to end; a
line still unreadable fails the run, naming it, and `ls` shows it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import make_tree, rest_at
from pubmed_mirror._plan import Selection, unreadable_entries
from pubmed_mirror._transport import RemoteEntry
from pubmed_mirror.testing import Fault, FaultyFTPServer
from test_cli import run

# each file's mtime on the server, to the nanosecond (the second and the fraction matter)
MTIMES_NS = [1_767_323_045_123_456_789, 1_790_000_012_999_999_999, 1_795_012_301_000_000_000]
NAMES = ["pubmed26n0001.xml.gz", "with  two spaces.xml.gz", "café 文献.xml.gz"]


@pytest.fixture
def remote(tmp_path: Path) -> dict[str, bytes]:
    """Three files (one with its NCBI-style NAME.md5) with known mtimes."""
    root = tmp_path / "remote"
    data = make_tree(root, [300_000, 120_000, 50_000], seed=13)
    files = {}
    for old, new, mtime_ns in zip(sorted(data), NAMES, MTIMES_NS, strict=True):
        (root / old).rename(root / new)
        os.utime(root / new, ns=(mtime_ns, mtime_ns))
        files[new] = data[old]
    first = NAMES[0]
    checksum = f"MD5({first})= {hashlib.md5(files[first]).hexdigest()}\n".encode()
    (root / f"{first}.md5").write_bytes(checksum)
    os.utime(root / f"{first}.md5", ns=(MTIMES_NS[0], MTIMES_NS[0]))
    files[f"{first}.md5"] = checksum
    return files


def ls_lines(root: Path, time_style: str, tz: str) -> list[str]:
    """What GNU `ls -l` writes for `root` in that time style and zone (names as they are)."""
    done = subprocess.run(["ls", "-lN", "--show-control-chars", f"--time-style={time_style}",
                           str(root)], capture_output=True, text=True, check=True,
                          env={"TZ": tz, "LC_ALL": "C.UTF-8", "PATH": os.environ["PATH"]})
    return done.stdout.splitlines()


def summary(out: str) -> dict[str, Any]:
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "summary"
    return dict(last)


@pytest.mark.parametrize(("time_style", "tz", "resolution"), [
    ("long-iso", "UTC0", 60),  # read as UTC, like every `ls -l` time without a zone
    ("full-iso", "UTC0", 1),
    ("full-iso", "IST-5:30", 1),  # +0530
    ("full-iso", "XST8", 1),  # -0800
])
def test_iso_listings_are_mirrored(tmp_path: Path, remote: dict[str, bytes], time_style: str,
                                   tz: str, resolution: int) -> None:
    """Every file of a directory listed in long-iso or full-iso form arrives whole, stamped
    with the listed time (full-iso: its zone applied, to the second), and the next run skips
    them all."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    lines = ls_lines(root, time_style, tz)
    with FaultyFTPServer(root, list_lines=lines) as server:
        first = run("mirror", server.url, "--dest", str(dest), "--json")
        again = run("mirror", server.url, "--dest", str(dest), "--json")
        listed = run("ls", server.url, "--json")
        retrieved = server.stats.retr
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    for name, data in remote.items():
        assert (dest / name).read_bytes() == data, name
        expected = (os.stat(root / name).st_mtime_ns // 10**9) // resolution * resolution
        assert (dest / name).stat().st_mtime == expected, name
    assert summary(first.stdout)["done"] == len(NAMES)
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout)["skipped"] == len(NAMES)
    assert retrieved == {name: 1 for name in remote}
    entries = {e["name"]: e for e in map(json.loads, listed.stdout.splitlines())}
    assert sorted(entries) == sorted(remote)
    assert {e["kind"] for e in entries.values()} == {"file"}


UNREADABLE_STYLE = "+%d.%m.%Y %H:%M"  # a locale's date: no format we can read


@pytest.mark.parametrize(("unreadable", "include", "code"), [
    (NAMES[2], None, 1),  # a selected file hides in the line: the run fails, naming it
    (f"{NAMES[0]}.md5", "*.xml.gz", 1),  # the NAME.md5 of a selected file: the same
    (NAMES[2], "pubmed*", 0),  # no tail of the line is selected: warned, nothing lost
])
def test_unreadable_lines_are_never_dropped_silently(
        tmp_path: Path, remote: dict[str, bytes], unreadable: str, include: str | None,
        code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A listing line in no known format that may name a selected file (or its NAME.md5)
    makes the run (and its dry run) exit 1 naming the line, in the summary and in --json,
    after mirroring everything readable; one that cannot name a selected file only warns;
    `ls` shows it."""
    monkeypatch.setenv("COLUMNS", "400")  # tables keep each line whole
    root, dest = tmp_path / "remote", tmp_path / "local"
    readable = [line for line in ls_lines(root, "long-iso", "UTC0")
                if not line.endswith(" " + unreadable)]
    odd = next(line for line in ls_lines(root, UNREADABLE_STYLE, "UTC0")
               if line.endswith(" " + unreadable))
    selection = [] if include is None else ["--include", include]
    with FaultyFTPServer(root, list_lines=[*readable, odd]) as server:
        text = run("mirror", server.url, "--dest", str(tmp_path / "text"), *selection)
        as_json = run("mirror", server.url, "--dest", str(dest), "--json", *selection)
        table = run("ls", server.url)
        listed = run("ls", server.url, "--json")
        plan = run("mirror", server.url, "--dest", str(tmp_path / "dry"), "--dry-run",
                   "--json", *selection)
    assert (text.returncode, as_json.returncode) == (code, code), text.stdout + text.stderr
    mirrored = {n for n in remote if n != unreadable and (include != "pubmed*" or
                                                          n.startswith("pubmed"))}
    for name in mirrored:
        assert (dest / name).read_bytes() == remote[name], name
    end = summary(as_json.stdout)
    assert odd in text.stderr + text.stdout
    if code:
        assert end["failures"] == [{"name": odd, "error": end["failures"][0]["error"]}]
        assert "cannot read" in end["failures"][0]["error"]
        assert odd in text.stdout  # the summary table names it
    else:
        assert end["failed"] == 0
        assert "cannot name a selected file" in text.stderr
    assert plan.returncode == code, plan.stderr
    assert json.loads(plan.stdout)["unreadable"] == ([odd] if code else [])
    assert odd in table.stdout and "unreadable" in table.stdout
    entries = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {"name": odd, "kind": "unreadable"}.items() <= next(
        e for e in entries if e["name"] == odd).items()


@pytest.mark.parametrize("split", [True, False], ids=["split", "no-split"])
def test_full_iso_times_agree_with_mdtm(tmp_path: Path, split: bool) -> None:
    """A full-iso time with its zone applied is the time MDTM gives, so a file without an
    MD5 is split over an idle session (the segment's MDTM agrees with the listing), and
    with --no-split a stalled transfer resumes where it stopped: never started again as
    "changed on the server", every byte sent once but the overlap a resume compares."""
    root, dest = tmp_path / "remote", tmp_path / "local"
    [(name, data)] = make_tree(root, [10 << 20], seed=5).items()
    os.utime(root / name, ns=(MTIMES_NS[1], MTIMES_NS[1]))
    lines = ls_lines(root, "full-iso", "IST-5:30")
    server = FaultyFTPServer(root, list_lines=lines, rate_per_connection=(4 << 20) if split else 0)
    if not split:
        server.faults.add(name, Fault(kind="stall", after_bytes=1_000_000, stall_seconds=5))
    extra = ["--concurrency", "2"] if split else ["--no-split", "--stall-timeout", "1"]
    with server:
        result = run("mirror", server.url, "--dest", str(dest), "--no-verify", *extra)
        stats = server.stats
    assert result.returncode == 0, result.stdout + result.stderr
    assert (dest / name).read_bytes() == data
    assert "changed on the server" not in result.stderr
    offsets = stats.rest_offsets[name]
    if split:  # the first RETR stops at the middle: what was in flight then is extra
        assert offsets[0] == 0 and len(offsets) >= 2 and all(0 < o < len(data)
                                                               for o in offsets[1:])
        assert len(data) <= stats.bytes_sent[name] < len(data) + (1 << 20)
    else:
        assert offsets == [0, rest_at(1_000_000)]
        assert stats.bytes_sent[name] == len(data) + 1_000_000 - rest_at(1_000_000)


ODD = "-rw-r--r-- 1 0 0 5 29.11.2026 12:00 "


@pytest.mark.parametrize(("name", "include", "exclude", "may"), [
    ("pubmed26n0001.xml.gz", (), (), True),  # every file is selected
    ("pubmed26n0001.xml.gz", ("*.xml.gz",), (), True),
    ("pubmed26n0001.xml.gz", ("*.txt",), (), False),
    ("pubmed26n0001.xml.gz", (), ("*.gz",), False),  # every tail is excluded
    ("pubmed26n0001.xml.gz.md5", ("*.xml.gz",), (), True),  # a selected file's NAME.md5
    ("README.txt.md5", ("*.xml.gz",), (), False),
    ("odd name.xml.gz", ("name.xml.gz",), (), True),  # the name may start at any space
    ("odd name.xml.gz", ("pubmed*",), (), False),
])
def test_unreadable_lines_that_may_name_a_selected_file(
        name: str, include: tuple[str, ...], exclude: tuple[str, ...], may: bool) -> None:
    """A line we cannot read fails the run only when some tail of it could be a selected
    name (or the NAME.md5 of one), whatever the name turns out to be."""
    entry = RemoteEntry(ODD + name, None, None, "unreadable")
    readable = RemoteEntry(name, 5, None)
    found = unreadable_entries([readable, entry], Selection(include=include, exclude=exclude))
    assert found == ((entry,) if may else ())
