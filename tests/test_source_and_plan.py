"""URL parsing, credentials and the selection plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubmed_mirror import FtpSource, MirrorOptions, RemoteEntry
from pubmed_mirror._plan import Selection, select_files, unsafe_name_reason


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


@given(st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_ .\-]{0,40}", fullmatch=True))
def test_plain_names_are_accepted(name: str) -> None:
    """Ordinary names (no separators, no '..') pass the check."""
    if ".." not in name and not name.endswith((".part", ".part.meta")) and name not in (".",):
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
    """Entries trying to escape DEST never reach the plan."""
    entries = _entries("ok.gz", "../evil.gz", "a/b.gz", "x\x01.gz")
    assert names(select_files(entries, Selection())) == ["ok.gz"]
