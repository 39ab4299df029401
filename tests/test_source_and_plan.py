"""URL parsing, credentials and the selection plan."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubmed_mirror import FtpSource, HttpSource, MirrorOptions, RemoteEntry
from pubmed_mirror._plan import (
    PlannedFile,
    Selection,
    is_current,
    same_time,
    unsafe_name_reason,
)
from pubmed_mirror._pubmed import file_order
from pubmed_mirror._resume import same_version
from pubmed_mirror._staging import PlanCounts, Staging
from pubmed_mirror._state import Manifest, ManifestEntry
from pubmed_mirror._tree import FoldRule, unsafe_path_reason

_EVERY = Selection()


def staged_plan(dest: Path, manifest: Manifest, entries: Sequence[RemoteEntry],
                selection: Selection = _EVERY, *, verify: bool = True
                ) -> tuple[list[PlannedFile], PlanCounts]:
    """The plan of `entries` over DEST as a run makes it: staged in the manifest's
    database, selected, compared (`_staging`)."""
    staging = Staging(manifest.connection, manifest.columns, selection)
    staging.start()
    staging.add(entries)
    staging.finish(FoldRule())
    counts = staging.compare(dest, verify=verify)
    return list(staging.files()), counts


def select_files(entries: Sequence[RemoteEntry], selection: Selection
                 ) -> list[tuple[RemoteEntry, RemoteEntry | None]]:
    """The files a run over an empty DEST plans, each with its NAME.md5."""
    with tempfile.TemporaryDirectory() as tmp, Manifest.open(Path(tmp)) as manifest:
        files, _ = staged_plan(Path(tmp), manifest, entries, selection)
    return [(f.entry, f.checksum) for f in files]


def test_url_defaults_to_anonymous(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ftp://host/dir/ logs in anonymously on port 21."""
    monkeypatch.delenv("PUBMED_MIRROR_PASSWORD", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    src = FtpSource.parse("ftp://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/")
    assert (src.host, src.port, src.path, src.user) == (
        "ftp.ncbi.nlm.nih.gov", 21, "/pubmed/updatefiles/", "anonymous")


def test_password_from_environment_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password comes from the environment and appears in neither repr nor str."""
    monkeypatch.setenv("PUBMED_MIRROR_PASSWORD", "s3cret-pw")
    src = FtpSource.parse("ftp://alice@127.0.0.1:2121/data/")
    assert src.user == "alice" and src.password == "s3cret-pw" and src.port == 2121
    assert "s3cret-pw" not in repr(src) and "s3cret-pw" not in str(src)


def test_password_from_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the variable, ~/.netrc supplies login and password for the host."""
    monkeypatch.delenv("PUBMED_MIRROR_PASSWORD", raising=False)
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine example.org login bob password hunter2\n")
    netrc.chmod(0o600)
    src = FtpSource.parse("ftp://example.org/x/", netrc_file=netrc)
    assert (src.user, src.password) == ("bob", "hunter2")


def test_hosts_urls_allow_are_taken() -> None:
    """An IPv6 address in brackets (FTP's too, refused before), a name with '_' or a
    trailing dot, a name beginning with digits; a proxy's name in any script."""
    from pubmed_mirror._proxy import parse_proxy

    assert FtpSource.parse("ftp://[::1]:2121/x/").host == "::1"
    for host in ("my_host", "example.org.", "123.example.org", "1e100.net"):
        assert FtpSource.parse(f"ftp://{host}/x/").host == host
        assert HttpSource.parse(f"https://{host}/x/").host == host
    assert parse_proxy("http://b\u00fccher.example:3128", from_argv=True).host == (
        "b\u00fccher.example")


@pytest.mark.parametrize(
    "url",
    ["http://host/dir/", "ftp://user:pw@host/dir/", "ftp://host:99999/", "ftp:///dir/",
     "ftp://ho st/", "ftp://host/dir?x=1", "not a url"],
)
def test_malformed_urls_are_refused(url: str) -> None:
    """Each malformed or password-bearing URL raises ValueError before any I/O."""
    with pytest.raises(ValueError):
        FtpSource.parse(url)


@pytest.mark.parametrize(
    "name",
    ["../etc", "a/b", "a\\b", "..", ".", "", "x\x00y", "tab\there", "new\nline", "x.part",
     "c1\x85.xml.gz", "gz.\u202excod.xml", "isolate\u2066.xml.gz", "del\x7f"],
)
def test_unsafe_names_are_rejected(name: str) -> None:
    """Names that could escape DEST or clash with our files get a reason."""
    assert unsafe_name_reason(name) is not None


def test_a_name_is_refused_over_255_bytes_as_the_file_system_counts_them() -> None:
    """A name over 255 bytes cannot be a local file; its bytes are counted as they reach
    the file system. A name with a byte that is not UTF-8 (Latin-1 over FTP) is refused
    as such: the manifest cannot hold it."""
    assert unsafe_name_reason("L" * 255) is None
    assert unsafe_name_reason("L" * 256) is not None
    assert unsafe_name_reason("\u00e9" * 128) is not None  # 256 bytes in UTF-8
    assert unsafe_name_reason(b"\xe9".decode("utf-8", "surrogateescape") * 2) == "not UTF-8"


@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ .\-]{0,40}", fullmatch=True))
def test_plain_names_are_accepted(name: str) -> None:
    """Ordinary names (no separators, no '..') pass the check."""
    if ".." not in name and not name.endswith((".part", ".part.meta", ".part.meta.tmp")) \
            and name not in (".",):
        assert unsafe_name_reason(name) is None


def _entries(*names: str) -> list[RemoteEntry]:
    return [RemoteEntry(n, 10, 0.0) for n in names]


def names(selected: list[tuple[RemoteEntry, RemoteEntry | None]]) -> list[str]:
    return [entry.name for entry, _ in selected]


def test_plan_sorts_naturally_and_filters() -> None:
    """Files come in numeric order; include/exclude/max_files apply; dirs and links drop."""
    entries = _entries("pubmed26n0010.xml.gz", "pubmed26n0002.xml.gz", "README.txt",
                       "pubmed26n0002.xml.gz.md5", "pubmed26n0100.xml.gz")
    entries += [RemoteEntry("sub", None, None, "dir"), RemoteEntry("lnk.xml.gz", 1, 0, "link")]
    opts = MirrorOptions(include=("*.xml.gz",), exclude=("*0100*",), max_files=5)
    assert names(select_files(entries, opts.selection())) == [
        "pubmed26n0002.xml.gz", "pubmed26n0010.xml.gz"]
    # the .md5 travels with its data file, never as a file of its own
    assert names(select_files(entries, Selection(max_files=3))) == [
        "README.txt", "pubmed26n0002.xml.gz", "pubmed26n0010.xml.gz"]


def test_plan_drops_hostile_names() -> None:
    """Entries trying to escape DEST never reach the plan; a nested name (`a/b.gz`, as a
    recursive listing or an S3 key gives it) does, and lands below DEST."""
    entries = _entries("ok.gz", "../evil.gz", "a/b.gz", "x\x01.gz", "/abs.gz", "a//b.gz",
                       "a/../../b.gz", "a/.pubmed-mirror/x.gz", "a/x.gz.part", "a/")
    assert names(select_files(entries, Selection())) == ["a/b.gz", "ok.gz"]


# -- properties of the name check and the selection ----------------------------------------------


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "x\x00", "c\\d", ".pubmed-mirror",
                                 "é", "f.part", "g h"]), min_size=1, max_size=4))
def test_a_path_that_passes_stays_below_dest(parts: list[str]) -> None:
    """Any relative path the path check lets through joins DEST to a path strictly below
    it, with no '..', '.' or empty component and no component the name check refuses."""
    path = "/".join(parts)
    if unsafe_path_reason(path) is not None:
        return
    dest = Path("/srv/dest")
    joined = Path(os.path.normpath(dest / path))
    assert joined.parts[:3] == dest.parts and len(joined.parts) == 3 + len(parts)
    assert all(unsafe_name_reason(p) is None for p in parts)


@given(st.text(max_size=30))
def test_a_name_that_passes_stays_inside_dest(name: str) -> None:
    """Any name the check lets through is one plain entry of DEST: no separator, no '..',
    no control or bidi character, and joined to DEST it resolves to a child of DEST."""
    if unsafe_name_reason(name) is not None:
        return
    dest = Path("/srv/dest")
    assert "/" not in name and "\\" not in name and ".." not in name
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in name)
    assert not set(name) & set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                               "\u2066\u2067\u2068\u2069")
    assert (dest / name).resolve().parent == dest


_NAMES = st.sampled_from([f"pubmed26n{i:04d}.xml.gz" for i in (1, 2, 9, 10, 100, 1334)]
                         + ["README.txt", "pubmed26n0001_stats.html", "other.gz"])
_ENTRIES = st.lists(
    st.tuples(_NAMES, st.booleans(), st.sampled_from(["file", "file", "file", "dir", "link"])),
    max_size=12, unique_by=lambda t: t[0])


@given(entries=_ENTRIES, newest=st.none() | st.integers(0, 8),
       max_files=st.none() | st.integers(0, 8), include=st.booleans())
def test_selection_properties(entries: list[tuple[str, bool, str]], newest: int | None,
                              max_files: int | None, include: bool) -> None:
    """Whatever the listing: only plain files, in PubMed load order, each with its own
    NAME.md5 when listed and never a NAME.md5 on its own; --newest takes the tail of the
    selection, then --max-files its head; --include filters."""
    listing = []
    for name, with_md5, kind in entries:
        listing.append(RemoteEntry(name, 10, 0.0, kind))  # type: ignore[arg-type]
        if with_md5:
            listing.append(RemoteEntry(name + ".md5", 1, 0.0))
    globs = ("*.xml.gz",) if include else ()
    everything = select_files(listing, Selection(include=globs))
    chosen = select_files(listing, Selection(include=globs, newest=newest, max_files=max_files))
    files = {e.name for e in listing if e.kind == "file"}
    names = [e.name for e, _ in everything]
    assert set(names) <= files and not any(n.endswith(".md5") and n[:-4] in files
                                           for n in names)
    assert names == sorted(names, key=file_order)
    assert not include or all(n.endswith(".xml.gz") for n in names)
    for entry, checksum in everything:
        assert (checksum is not None) == (entry.name + ".md5" in files)
        assert checksum is None or checksum.name == entry.name + ".md5"
    expected = everything if newest is None else everything[::-1][:newest][::-1]
    assert chosen == expected[:max_files]


STARTED = 1_795_953_600.0  # when the part began


@pytest.mark.parametrize(("listed", "now", "same"), [
    (RemoteEntry("f", 10, 1000.0), RemoteEntry("f", 10, 1000.0), True),
    (RemoteEntry("f", 10, 1000.0), RemoteEntry("f", 10, 4600.0), False),  # MLSD: to the second
    (RemoteEntry("f", 10, 1000.0), RemoteEntry("f", 10, 1000.0 + 86400), False),
    (RemoteEntry("f", 10, 1000.0), RemoteEntry("f", 11, 1000.0), False),  # size
    # LIST (coarse, maybe local time): MDTM against when the part began
    (RemoteEntry("f", 10, 1020.0, mtime_resolution=60), RemoteEntry("f", 10, 4637.0), True),
    (RemoteEntry("f", 10, 1020.0, mtime_resolution=60),
     RemoteEntry("f", 10, STARTED + 5), False),  # modified while we were fetching it
    (RemoteEntry("f", 10, 1020.0, mtime_resolution=60),
     RemoteEntry("f", 10, STARTED - 600), False),  # just before: the server's clock may lag
    (RemoteEntry("f", 10, 1020.0, mtime_resolution=60),
     RemoteEntry("f", 10, STARTED - 5 * 3600), False),  # an MDTM in New York's time
    (RemoteEntry("f", 10, 1020.0, mtime_resolution=60),
     RemoteEntry("f", 10, STARTED - 16 * 3600), True),
])
def test_a_retry_knows_a_new_version(listed: RemoteEntry, now: RemoteEntry, same: bool) -> None:
    """SIZE/MDTM against the listing (MLSD) or against when the part began (LIST)."""
    assert same_version(listed, now, STARTED, checked=False) is same


@pytest.mark.parametrize("listed_time", [1000.0, None])
@pytest.mark.parametrize("checked", [True, False])
def test_no_time_is_the_same_version_only_with_an_md5(listed_time: float | None,
                                                      checked: bool) -> None:
    """Without a time on either side, only an MD5 to check (`checked`) lets a part resume."""
    listed = RemoteEntry("f", 10, listed_time)
    assert same_version(listed, RemoteEntry("f", 10, None), STARTED, checked=checked) is checked
    assert same_version(listed, RemoteEntry("f", 11, None), STARTED, checked=checked) is False


@pytest.mark.parametrize(("recorded", "listed", "resolution"), [
    (1000.0, 1000.0, 1.0), (1000.5, 1000.0, 1.0), (999.0, 1000.0, 1.0),
    (1001.0, 1000.0, 1.0), (999.5, 1000.0, 0.5), (1079.0, 1020.0, 60.0),
    (1080.0, 1020.0, 60.0), (1_795_953_600.0, 1_795_953_600.0 - 43_200, 86_400.0),
    (None, 1000.0, 1.0), (1000.0, None, 1.0), (None, None, 1.0),
])
def test_the_staged_comparison_reads_times_as_same_time(
        tmp_path: Path, recorded: float | None, listed: float | None, resolution: float) -> None:
    """The manifest vouches for a current local copy (skip, else check) exactly when its
    recorded time is the listed one at the listing's resolution, as `same_time` says, and
    the listing gives a time at all (or a validator: here none)."""
    local = tmp_path / "f"
    local.write_bytes(b"abcd")
    if listed is not None:
        os.utime(local, (listed, listed))
    entry = RemoteEntry("f", 4, listed, mtime_resolution=resolution)
    with Manifest.open(tmp_path) as manifest:
        # (fetched long after the listed time's minute, or day, was over: see `_plan.YOUNG`)
        manifest.record(ManifestEntry("f", 4, recorded, "0" * 32, fetched_at=2e9))
        files, _ = staged_plan(tmp_path, manifest, [entry], verify=False)
    vouched = same_time(recorded, entry) and listed is not None
    assert [f.action for f in files] == ["skip" if vouched else "check"]


@pytest.mark.parametrize(("fetched", "resolution", "action"), [
    (1_050.0, 60.0, "check"), (51_539.0, 60.0, "check"), (51_541.0, 60.0, "skip"),
    (1_021.0, 1.0, "skip"), (1_025.0, 86_400.0, "skip")])
def test_a_record_made_before_its_listed_minute_was_over_is_checked(
        tmp_path: Path, fetched: float, resolution: float, action: str) -> None:
    """Listed at 1020 to the minute: recorded before 1020 + 2 x 60 + 14 hours (the minute,
    as much again for the server's clock, and a local time read as UTC), the file may have
    been rewritten within that minute at the same size since: checked, not skipped. A time
    to the second vouches at once; so does a day's (an `ls -l` time of a file months old)."""
    local = tmp_path / "f"
    local.write_bytes(b"abcd")
    os.utime(local, (1_020.0, 1_020.0))
    entry = RemoteEntry("f", 4, 1_020.0, mtime_resolution=resolution)
    with Manifest.open(tmp_path) as manifest:
        manifest.record(ManifestEntry("f", 4, 1_020.0, "0" * 32, fetched_at=fetched))
        files, _ = staged_plan(tmp_path, manifest, [entry], verify=False)
    assert [f.action for f in files] == [action]


def test_a_listing_that_drops_to_the_day_is_still_current(tmp_path: Path) -> None:
    """Stamped `Nov 29 12:00` when recent; six months on the listing says `Nov 29  2026`
    (midnight, the day only): the same file, not a new version."""
    local = tmp_path / "f"
    local.write_bytes(b"abcd")
    noon = 1_795_953_600.0  # 2026-11-29 12:00 UTC
    os.utime(local, (noon, noon))
    day = RemoteEntry("f", 4, noon - 12 * 3600, mtime_resolution=86400)
    assert is_current(local, day) and same_time(noon, day)
    assert not is_current(local, RemoteEntry("f", 4, noon - 12 * 3600))  # MLSD: a change
