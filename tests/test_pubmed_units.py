"""PubMed specifics without a network: the .md5 parser, load order, presets, the manifest,
the lock, the plan's decisions and the progress tally."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FakeClock
from pubmed_mirror import (
    DestinationBusy,
    FtpSource,
    Manifest,
    ManifestEntry,
    RemoteEntry,
    parse_md5_file,
)
from pubmed_mirror._events import (
    FileDone,
    FileProgress,
    FileQueued,
    FileSkipped,
    FileStarted,
    ListingDone,
)
from pubmed_mirror._plan import Selection
from pubmed_mirror._pubmed import file_order
from pubmed_mirror._state import DestLock
from pubmed_mirror.commands._output import Tally
from test_source_and_plan import select_files, staged_plan

NAME = "pubmed26n0001.xml.gz"
DIGEST = hashlib.md5(b"x").hexdigest()

# -- the .md5 parser ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"MD5({NAME})= {DIGEST}\n",  # NCBI's exact form
    f"MD5 ({NAME}) = {DIGEST}",  # BSD md5
    f"{DIGEST}  {NAME}\n",  # md5sum
    f"{DIGEST} *{NAME}",  # md5sum, binary mode
    f"{DIGEST.upper()}\n",  # a bare digest, upper case
    f"\n  MD5({NAME})= {DIGEST}  \n\n",  # stray whitespace
])
def test_md5_forms_are_accepted(text: str) -> None:
    """NCBI's, BSD's and md5sum's forms and a bare digest all give the lowercase digest."""
    assert parse_md5_file(text.encode(), NAME) == DIGEST


@pytest.mark.parametrize(("text", "message"), [
    (f"MD5(pubmed26n0002.xml.gz)= {DIGEST}", "not of"),
    (f"MD5({NAME})= {DIGEST[:-1]}", "no MD5 digest"),
    ("", "expected one line"),
    (f"{DIGEST}  {NAME}\n{DIGEST}  other\n", "expected one line"),
    ("<html>404 Not Found</html>", "no MD5 digest"),
])
def test_md5_garbage_is_refused(text: str, message: str) -> None:
    """A checksum for another file, a short digest, an empty or HTML file raise ValueError."""
    with pytest.raises(ValueError, match=message):
        parse_md5_file(text.encode(), NAME)


def test_md5_non_text_is_refused() -> None:
    """Bytes that are not UTF-8 are not a checksum file."""
    with pytest.raises(ValueError, match="not text"):
        parse_md5_file(b"\xff\xfe\x00", NAME)


@given(st.binary(min_size=0, max_size=200), st.from_regex(r"[a-z0-9_.]{1,30}", fullmatch=True))
def test_md5_round_trip(data: bytes, name: str) -> None:
    """Whatever the bytes and name, the NCBI line for them parses back to their digest."""
    digest = hashlib.md5(data).hexdigest()
    assert parse_md5_file(f"MD5({name})= {digest}\n".encode(), name) == digest


@given(st.binary(max_size=100))
def test_md5_parser_never_crashes(text: bytes) -> None:
    """Any bytes give a digest or a ValueError, nothing else."""
    try:
        assert len(parse_md5_file(text, NAME)) == 32
    except ValueError:
        pass


# -- order, presets and selection --------------------------------------------------------------


def test_load_order_is_numeric() -> None:
    """pubmed26n0999 < pubmed26n1000 < pubmed26n10000, whatever the padding."""
    names = ["pubmed26n10000.xml.gz", "pubmed26n1000.xml.gz", "pubmed26n0999.xml.gz"]
    assert sorted(names, key=file_order) == [names[2], names[1], names[0]]


def test_presets_point_at_ncbi_with_the_data_files_selected() -> None:
    """pubmed:baseline and pubmed:updatefiles are NCBI's trees, selecting *.xml.gz."""
    for preset, path in (("pubmed:baseline", "/pubmed/baseline/"),
                         ("pubmed:updatefiles", "/pubmed/updatefiles/")):
        src = FtpSource.parse(preset)
        assert (src.host, src.path, src.default_include) == (
            "ftp.ncbi.nlm.nih.gov", path, ("*.xml.gz",))


def test_newest_then_max_files() -> None:
    """newest keeps the last N by number; the .md5 of each chosen file comes with it."""
    entries = [RemoteEntry(f"pubmed26n{i:04d}.xml.gz", 1, 0.0) for i in (3, 10, 1, 2)]
    entries += [RemoteEntry("pubmed26n0010.xml.gz.md5", 60, 0.0), RemoteEntry("README.txt", 1, 0)]
    chosen = select_files(entries, Selection(include=("*.xml.gz",), newest=2))
    assert [(e.name, c.name if c else None) for e, c in chosen] == [
        ("pubmed26n0003.xml.gz", None), ("pubmed26n0010.xml.gz", "pubmed26n0010.xml.gz.md5")]
    assert select_files(entries, Selection(newest=0)) == []
    assert len(select_files(entries, Selection(include=("*.xml.gz",), newest=9))) == 4
    assert len(select_files(entries, Selection(newest=2, max_files=1))) == 1


# -- the manifest, the lock and the plan --------------------------------------------------------


def test_manifest_survives_reopening(tmp_path: Path) -> None:
    """A recorded entry is there after closing and reopening; verify's marks stick."""
    entry = ManifestEntry(NAME, 10, 1.5, DIGEST, 100.0, 100.0)
    with Manifest.open(tmp_path) as manifest:
        manifest.record(entry)
    with Manifest.open(tmp_path) as manifest:
        assert manifest.get(NAME) == entry and manifest.entries() == [entry]
        manifest.mark_bad(NAME, "MD5 differs")
    with Manifest.open(tmp_path, create=False) as manifest:
        assert manifest.writable and manifest.get(NAME) == replace(entry, bad="MD5 differs")
        manifest.mark_verified(NAME, 200.0)
        assert manifest.get(NAME) == replace(entry, verified_at=200.0)


def test_manifest_from_before_the_bad_column(tmp_path: Path) -> None:
    """A manifest written without the `bad` column is read, and given it when written."""
    path = tmp_path / ".pubmed-mirror" / "manifest.sqlite"
    path.parent.mkdir()
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE files (name TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime REAL,"
               " md5 TEXT, fetched_at REAL NOT NULL, verified_at REAL)")
    db.execute("INSERT INTO files VALUES (?, 10, 1.5, ?, 100.0, NULL)", (NAME, DIGEST))
    db.commit()
    db.close()
    with Manifest.open(tmp_path) as manifest:
        assert manifest.get(NAME) == ManifestEntry(NAME, 10, 1.5, DIGEST, 100.0)
        manifest.mark_bad(NAME, "gone")
        assert manifest.get(NAME) == ManifestEntry(NAME, 10, 1.5, DIGEST, 100.0, bad="gone")


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    """A second holder is refused while the first holds DEST; after release it gets it."""
    with DestLock(tmp_path):
        with pytest.raises(DestinationBusy, match=str(os.getpid())):
            DestLock(tmp_path).acquire()
    with DestLock(tmp_path):
        pass


def test_plan_decisions(tmp_path: Path) -> None:
    """fetch when absent or different; check when size and mtime match but the manifest does
    not vouch; skip when it does; a resumable part's length is reported."""
    files = {f"f{i}": RemoteEntry(f"f{i}", 4, 1000.0) for i in range(4)}
    for name in ("f1", "f2"):
        (tmp_path / name).write_bytes(b"abcd")
        os.utime(tmp_path / name, (1000, 1000))
    (tmp_path / "f3").write_bytes(b"abc")  # wrong size
    with Manifest.open(tmp_path) as manifest:
        manifest.record(ManifestEntry("f2", 4, 1000.0, None, 1.0))
        planned, counts = staged_plan(tmp_path, manifest, list(files.values()))
    assert [f.action for f in planned] == ["fetch", "check", "skip", "fetch"]
    assert counts.bytes_to_fetch == 12


def test_plan_checks_what_verify_found_bad_or_was_never_verified(tmp_path: Path) -> None:
    """A file `verify` marked bad is not skipped; one recorded without an MD5 (a --no-verify
    run) is checked when this run verifies and has a NAME.md5, skipped otherwise."""
    entry, checksum = RemoteEntry("f", 4, 1000.0), RemoteEntry("f.md5", 40, 1000.0)
    for name, size in (("f", 4), ("f.md5", 40)):
        (tmp_path / name).write_bytes(b"x" * size)
        os.utime(tmp_path / name, (1000, 1000))
    with Manifest.open(tmp_path) as manifest:
        manifest.record(ManifestEntry("f.md5", 40, 1000.0, None, 1.0))
        manifest.record(ManifestEntry("f", 4, 1000.0, None, 1.0))

        def action(verify: bool = True) -> str:
            planned, _ = staged_plan(tmp_path, manifest, [entry, checksum], verify=verify)
            return planned[0].action

        assert (action(), action(verify=False)) == ("check", "skip")
        manifest.record(ManifestEntry("f", 4, 1000.0, DIGEST, 1.0, 1.0))
        assert action() == "skip"
        manifest.mark_bad("f", "MD5 differs")
        assert (action(), action(verify=False)) == ("check", "check")


# -- the progress tally ------------------------------------------------------------------------


def test_tally_counts_rate_and_eta() -> None:
    """Resumed bytes count as done, the rate covers received bytes only, ETA follows."""
    clock = FakeClock()
    tally = Tally(clock)
    tally.on(ListingDone(2, 2000))
    tally.on(FileQueued("a", 1000))
    tally.on(FileQueued("b", 1000))
    tally.on(FileStarted("a", 1000, 400, 1))
    for _ in range(3):
        clock.now += 1.0
        tally.on(FileProgress("a", 100, tally.position["a"] + 100, 1000))
    assert tally.bytes_done == 700
    assert tally.rate() == pytest.approx(100.0)
    assert tally.eta() == pytest.approx(13.0)
    tally.on(FileDone("a", 1000, 300, 400, 1, 3.0))
    tally.on(FileSkipped("b", 1000))
    assert tally.finished == 2 and tally.bytes_done == 2000 and tally.eta() == 0.0
    assert tally.line().startswith("progress: 2/2 files")
