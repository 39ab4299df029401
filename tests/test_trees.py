"""Whole trees (`--recursive [--max-depth N]`): the installed command against pyftpdlib,
proftpd and Apache serving a tree of three levels, and the nested names' local layout:
links in DEST never written through, `--delete`, `verify` and `status` over a tree."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pubmed_mirror import RemoteEntry
from pubmed_mirror._plan import Selection
from pubmed_mirror._staging import Staging
from pubmed_mirror._state import Manifest
from pubmed_mirror._tree import FoldRule
from pubmed_mirror.testing import FaultyFTPServer
from real_ftpd import real_server
from test_cli import run
from webservers import apache, mini_httpd, missing, python_http

SPLIT = [[], ["--no-split"]]


def _md5_line(name: str, data: bytes) -> bytes:
    return f"MD5({name})= {hashlib.md5(data).hexdigest()}\n".encode()


def make_remote_tree(root: Path) -> dict[str, bytes]:
    """Three levels below `root`, an empty directory and a NAME.md5 in a subdirectory; the
    files (relative name -> bytes) a recursive mirror must land."""
    files = {
        "top.xml": b"top level\n" * 100,
        "a/one.xml": b"level one\n" * 2000,
        "a/b/two.xml": bytes(range(256)) * 40_000,  # 10 MiB: big enough to split
        "a/b/c/three.xml": b"level three\n" * 50,
        "z/caf\u00e9.xml": b"non-ascii directory sibling\n",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "a/b/two.xml.md5").write_bytes(_md5_line("two.xml", files["a/b/two.xml"]))
    files["a/b/two.xml.md5"] = (root / "a/b/two.xml.md5").read_bytes()
    (root / "empty").mkdir()
    return files


def landed(dest: Path) -> dict[str, bytes]:
    """Every regular file below DEST but our state directory, by relative name."""
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
            if p.is_file() and not p.is_symlink()
            and p.relative_to(dest).parts[0] != ".pubmed-mirror"}


def summary(out: str) -> dict[str, Any]:
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "summary"
    return last


def events(out: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, out.splitlines()) if e["event"] == kind]


@pytest.fixture
def world_readable() -> Iterator[Path]:
    """A directory outside pytest's private temp directory, which servers running as an
    unprivileged user can read."""
    root = Path(tempfile.mkdtemp(prefix="pm-trees-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def _readable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


# -- pyftpdlib --------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLIT, ids=["split", "no-split"])
@pytest.mark.parametrize("disable_mlsd", [False, True], ids=["mlsd", "list"])
def test_recursive_ftp_tree(tmp_path: Path, disable_mlsd: bool, split: list[str]) -> None:
    """A three-level tree lands at DEST/a/b/c byte for byte (the empty directory listed,
    nothing from a symlinked directory or a hostile name); the second run transfers
    nothing."""
    remote, dest, outside = tmp_path / "remote", tmp_path / "local", tmp_path / "outside"
    files = make_remote_tree(remote)
    outside.mkdir()
    (outside / "secret.xml").write_bytes(b"outside the served tree")
    (remote / "a/linked").symlink_to(outside)
    for hostile in ("a/ctl\x01dir/x.xml", "a/b/x.xml.part", "a/.pubmed-mirror/x.xml",
                    "a/back\\slash.xml"):
        (remote / hostile).parent.mkdir(parents=True, exist_ok=True)
        (remote / hostile).write_bytes(b"hostile")
    with FaultyFTPServer(remote, disable_mlsd=disable_mlsd) as server:
        first = run("mirror", server.url, "--dest", str(dest), "--recursive", "--json",
                    "--concurrency", "3", *split)
        retr_after_first = dict(server.stats.retr)
        second = run("mirror", server.url, "--dest", str(dest), "--recursive", "--json")
        retr_after_second = dict(server.stats.retr)
    assert landed(dest) == files
    assert "skipping entry 'a/b/x.xml.part'" in first.stderr
    assert "'a/ctl\\x01dir'" in first.stderr and "'a/back\\\\slash.xml'" in first.stderr
    assert "'a/.pubmed-mirror'" in first.stderr
    if disable_mlsd:  # LIST shows the link as a link: skipped
        assert first.returncode == 0, first.stderr
        assert "skipping symlink entry 'a/linked'" in first.stderr
    else:  # pyftpdlib's MLSD follows links, then refuses to list outside its root: failed
        assert first.returncode == 1
        failed = events(first.stdout, "file_failed")
        assert [e["name"] for e in failed] == ["a/linked"]
        assert "cannot list this directory" in failed[0]["reason"]
    done = {e["name"]: e for e in events(first.stdout, "file_done")}
    assert sorted(done) == sorted(n for n in files if not n.endswith(".md5"))
    assert done["a/b/two.xml"]["md5"] == hashlib.md5(files["a/b/two.xml"]).hexdigest()
    assert (dest / "empty").is_dir() is False  # an empty directory holds no file to land
    assert not (dest / "a/linked").exists() and not (dest / "a/ctl\x01dir").exists()
    assert not [p for p in dest.rglob("*.part")]
    assert summary(second.stdout)["done"] == 0
    assert summary(second.stdout)["skipped"] == len(done)
    if disable_mlsd:  # LIST shows minutes: a record made within its file's listed minute is
        # checked once more, by its NAME.md5 fetched again (`_plan.YOUNG`); no file is
        again = {name: count - retr_after_first.get(name, 0)
                 for name, count in retr_after_second.items()
                 if count != retr_after_first.get(name, 0)}
        assert again and all(n.endswith(".md5") and c == 1 for n, c in again.items()), again
    else:
        assert retr_after_second == retr_after_first


@pytest.mark.parametrize("depth, expected", [
    (0, ["top.xml"]),
    (1, ["a/one.xml", "top.xml", "z/caf\u00e9.xml"]),
    (2, ["a/b/two.xml", "a/b/two.xml.md5", "a/one.xml", "top.xml", "z/caf\u00e9.xml"]),
])
def test_max_depth(tmp_path: Path, depth: int, expected: list[str]) -> None:
    """`--max-depth N` lists N levels of subdirectories below the URL, no deeper (and the
    server sees no listing of a deeper one)."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    make_remote_tree(remote)
    with FaultyFTPServer(remote) as server:
        result = run("mirror", server.url, "--dest", str(dest), "--max-depth", str(depth))
    assert result.returncode == 0, result.stderr
    assert sorted(landed(dest)) == expected


def test_without_recursive_a_directory_stays_flat(tmp_path: Path) -> None:
    """Without `--recursive` only the URL's own files are mirrored, as before."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    make_remote_tree(remote)
    with FaultyFTPServer(remote) as server:
        result = run("mirror", server.url, "--dest", str(dest))
    assert result.returncode == 0, result.stderr
    assert sorted(landed(dest)) == ["top.xml"]


def test_globs_match_names_at_any_depth_and_paths_by_their_tail(tmp_path: Path) -> None:
    """`--include '*.xml'` matches a file's own name at any depth; a glob with a `/`
    matches as many trailing components (`b/*.xml`: a/b/two.xml only)."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    make_remote_tree(remote)
    (remote / "a/skip.txt").write_bytes(b"not xml")
    with FaultyFTPServer(remote) as server:
        any_depth = run("mirror", server.url, "--dest", str(dest), "--recursive",
                        "--include", "*.xml", "--exclude", "three*")
        tail = run("mirror", server.url, "--dest", str(tmp_path / "tail"), "--recursive",
                   "--include", "b/*.xml")
    assert any_depth.returncode == 0 and tail.returncode == 0, any_depth.stderr + tail.stderr
    assert sorted(landed(dest)) == ["a/b/two.xml", "a/b/two.xml.md5", "a/one.xml",
                                    "top.xml", "z/caf\u00e9.xml"]
    assert sorted(landed(tmp_path / "tail")) == ["a/b/two.xml", "a/b/two.xml.md5"]


def test_delete_removes_a_nested_file_and_the_directories_it_emptied(tmp_path: Path) -> None:
    """With `--delete`, a nested file gone from the server goes with its NAME.md5 and the
    directories that held only it; the rest of the tree stays."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    files = make_remote_tree(remote)
    with FaultyFTPServer(remote) as server:
        assert run("mirror", server.url, "--dest", str(dest), "--recursive").returncode == 0
        shutil.rmtree(remote / "a/b")
        result = run("mirror", server.url, "--dest", str(dest), "--recursive", "--delete",
                     "--max-delete", "100%", "--json")
    assert result.returncode == 0, result.stderr
    deleted = sorted(e["name"] for e in events(result.stdout, "file_deleted"))
    assert deleted == ["a/b/c/three.xml", "a/b/two.xml"]
    assert landed(dest) == {n: d for n, d in files.items() if not n.startswith("a/b/")}
    assert not (dest / "a/b").exists() and (dest / "a").is_dir()


def test_delete_keeps_the_files_below_a_directory_that_could_not_be_listed(
        tmp_path: Path) -> None:
    """A subdirectory the server refuses to list fails the run and `--delete` removes no
    recorded file below it, while a file gone elsewhere in the tree is still deleted."""
    remote, dest, outside = tmp_path / "remote", tmp_path / "local", tmp_path / "outside"
    files = make_remote_tree(remote)
    with FaultyFTPServer(remote) as server:
        assert run("mirror", server.url, "--dest", str(dest), "--recursive").returncode == 0
        # a/b now a link leading outside the root: pyftpdlib refuses its MLSD (550)
        shutil.move(str(remote / "a/b"), str(outside))
        (remote / "a/b").symlink_to(outside)
        (remote / "top.xml").unlink()
        result = run("mirror", server.url, "--dest", str(dest), "--recursive", "--delete",
                     "--max-delete", "100%", "--json")
    assert result.returncode == 1
    assert [e["name"] for e in events(result.stdout, "file_failed")] == ["a/b"]
    assert [e["name"] for e in events(result.stdout, "file_deleted")] == ["top.xml"]
    assert landed(dest) == {n: d for n, d in files.items() if n != "top.xml"}


def test_delete_keeps_the_files_below_a_directory_not_entered_as_a_loop(
        tmp_path: Path) -> None:
    """A real directory `data/data` that comes to list the same entries (names, sizes,
    times) as its parent `data` is not entered, as a loop would not be; `--delete` keeps
    what DEST holds below it (it deleted `data/data/README.txt`, still on the server)."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    inner = remote / "data/data"
    (inner / "data").mkdir(parents=True)
    (remote / "data/README.txt").write_bytes(b"the outer readme")
    (inner / "README.txt").write_bytes(b"the inner readme")  # as long, other bytes
    (inner / "extra.txt").write_bytes(b"only in the inner one\n")
    (remote / "gone.xml").write_bytes(b"removed before the second run\n")
    # (LIST: MLSD's `unique` facts would tell the two apart, and it would be entered)
    with FaultyFTPServer(remote, disable_mlsd=True) as server:
        first = run("mirror", server.url, "--dest", str(dest), "--recursive")
        assert first.returncode == 0, first.stderr
        (inner / "extra.txt").unlink()
        (remote / "gone.xml").unlink()
        for path in (remote / "data/README.txt", inner / "README.txt", inner,
                     inner / "data"):  # the two listings alike to the second
            os.utime(path, (1_700_000_000, 1_700_000_000))
        second = run("mirror", server.url, "--dest", str(dest), "--recursive", "--delete",
                     "--max-delete", "100%", "--json")
    assert second.returncode == 0, second.stderr
    assert "not entering 'data/data'" in second.stderr
    assert [e["name"] for e in events(second.stdout, "file_deleted")] == ["gone.xml"]
    assert (dest / "data/data/README.txt").read_bytes() == b"the inner readme"
    assert (dest / "data/data/extra.txt").exists()  # below the directory not entered


def test_a_link_the_server_follows_back_up_is_not_entered(tmp_path: Path) -> None:
    """Python's http.server follows a link `a/up` to the start directory: its page lists
    what the start's does (directories only: nothing to ask), so it is a loop, not entered
    (the walk ends, exit 0), and the tree's files, `b/` beside `a/` too, land once."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    (remote / "a").mkdir(parents=True)
    (remote / "a/x.xml").write_bytes(b"the one file\n")
    (remote / "b").mkdir()
    (remote / "b/y.xml").write_bytes(b"beside it\n")
    (remote / "a/up").symlink_to(remote)
    with python_http(remote) as port:
        result = run("mirror", f"http://127.0.0.1:{port}/", "--dest", str(dest),
                     "--recursive", "--json", "--stall-timeout", "5")
    assert result.returncode == 0, result.stderr
    assert "not entering 'a/up'" in result.stderr
    assert landed(dest) == {"a/x.xml": b"the one file\n", "b/y.xml": b"beside it\n"}


@pytest.mark.parametrize("narrower", [[], ["--max-depth", "0"], ["--max-depth", "1"]],
                         ids=["flat", "depth0", "depth1"])
def test_delete_after_a_shallower_listing_keeps_the_deeper_files(
        tmp_path: Path, narrower: list[str]) -> None:
    """A run listing fewer levels than the one before deletes only the files gone within
    the levels it listed, never the deeper recorded files it did not look at."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    files = make_remote_tree(remote)
    files["kept.xml"] = b"stays at the top\n"
    (remote / "kept.xml").write_bytes(files["kept.xml"])
    with FaultyFTPServer(remote) as server:
        assert run("mirror", server.url, "--dest", str(dest), "--recursive").returncode == 0
        (remote / "top.xml").unlink()
        result = run("mirror", server.url, "--dest", str(dest), *narrower, "--delete",
                     "--max-delete", "100%", "--json")
    assert result.returncode == 0, result.stderr
    assert [e["name"] for e in events(result.stdout, "file_deleted")] == ["top.xml"]
    assert landed(dest) == {n: d for n, d in files.items() if n != "top.xml"}


# -- a link inside DEST ---------------------------------------------------------------------


def test_a_linked_directory_in_dest_is_never_written_through(tmp_path: Path) -> None:
    """DEST/a a link to a directory outside: the files below it fail (exit 1), nothing is
    written, deleted or hashed through it, `verify` calls them corrupt; the rest lands."""
    remote, dest, outside = tmp_path / "remote", tmp_path / "local", tmp_path / "outside"
    files = make_remote_tree(remote)
    with FaultyFTPServer(remote) as server:
        assert run("mirror", server.url, "--dest", str(dest), "--recursive").returncode == 0
        shutil.copytree(dest / "a", outside)
        before = landed(outside)
        shutil.rmtree(dest / "a")
        (dest / "a").symlink_to(outside)
        (remote / "a/one.xml").write_bytes(b"a new version")  # would be written anew
        again = run("mirror", server.url, "--dest", str(dest), "--recursive", "--json")
        shutil.rmtree(remote / "a")
        deleting = run("mirror", server.url, "--dest", str(dest), "--recursive", "--json",
                       "--delete", "--max-delete", "100%")
    assert again.returncode == 1
    failed = {e["name"]: e["reason"] for e in events(again.stdout, "file_failed")}
    assert sorted(failed) == ["a/b/c/three.xml", "a/b/two.xml", "a/one.xml"]
    assert all("symbolic link" in error for error in failed.values())
    assert deleting.returncode == 0, deleting.stderr
    assert "not deleted, a directory on its way is a link" in deleting.stderr
    assert landed(outside) == before  # untouched: not written, not deleted
    assert (dest / "a").is_symlink()
    assert {n: d for n, d in landed(dest).items() if not n.startswith("a/")} == {
        n: d for n, d in files.items() if not n.startswith("a/")}


def test_verify_calls_a_file_behind_a_linked_directory_corrupt(tmp_path: Path) -> None:
    """`verify` over a tree hashes the nested files, names a corrupt one, and calls a file
    reached only through a link in DEST corrupt without hashing what it leads to."""
    remote, dest, outside = tmp_path / "remote", tmp_path / "local", tmp_path / "outside"
    make_remote_tree(remote)
    with FaultyFTPServer(remote) as server:
        assert run("mirror", server.url, "--dest", str(dest), "--recursive").returncode == 0
    good = run("verify", str(dest), "--json")
    assert good.returncode == 0, good.stdout + good.stderr
    checks = {e["name"]: e["verdict"] for e in map(json.loads, good.stdout.splitlines())
              if e.get("event") == "check"}
    assert checks["a/b/two.xml"] == "ok" and checks["a/b/c/three.xml"] == "unchecked"
    (dest / "a/b/two.xml").write_bytes(b"x" * (dest / "a/b/two.xml").stat().st_size)
    shutil.move(dest / "z", outside)
    (dest / "z").symlink_to(outside)
    bad = run("verify", str(dest), "--json")
    assert bad.returncode == 1
    verdicts = {e["name"]: (e["verdict"], e["reason"])
                for e in map(json.loads, bad.stdout.splitlines())
                if e.get("event") == "check"}
    assert verdicts["a/b/two.xml"][0] == "corrupt" and "MD5" in verdicts["a/b/two.xml"][1]
    assert verdicts["z/caf\u00e9.xml"][0] == "corrupt"
    assert "symbolic link" in verdicts["z/caf\u00e9.xml"][1]


# -- clashes --------------------------------------------------------------------------------


def test_nfc_and_nfd_names_both_land_where_the_file_system_keeps_them_apart(
        tmp_path: Path) -> None:
    """The probe at DEST finds this file system keeps é (NFC) and e + combining accent (NFD)
    apart, so both files land, each with its own bytes."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    nfc, nfd = "d/caf\u00e9.xml", unicodedata.normalize("NFD", "d/caf\u00e9.xml")
    (remote / "d").mkdir(parents=True)
    (remote / nfc).write_bytes(b"composed")
    (remote / nfd).write_bytes(b"decomposed")
    with FaultyFTPServer(remote) as server:
        result = run("mirror", server.url, "--dest", str(dest), "--recursive")
    assert result.returncode == 0, result.stderr
    assert landed(dest) == {nfc: b"composed", nfd: b"decomposed"}


def _kept(tmp_path: Path, fold: FoldRule, *names: str) -> list[str]:
    """The files a plan keeps of `names` (each listed as a file) under `fold`, sorted."""
    with Manifest.open(tmp_path) as manifest:
        staging = Staging(manifest.connection, manifest.columns, Selection())
        staging.start()
        staging.add([RemoteEntry(n, 1, 0.0) for n in names])
        staging.finish(fold)
        staging.compare(tmp_path, verify=True)
        return sorted(f.name for f in staging.files())


@pytest.mark.parametrize("fold, kept", [
    (FoldRule(), ["A/x", "a", "be\u0301", "b\u00e9"]),
    (FoldRule(case=True), ["A/x", "be\u0301", "b\u00e9"]),
    (FoldRule(normalise=True), ["A/x", "a", "be\u0301"]),
])
def test_clashing_paths_keep_the_first_in_sorted_order(fold: FoldRule, kept: list[str],
                                                       tmp_path: Path) -> None:
    """Paths that land on one local file under the file system's folding, or a file that
    is another's directory (`a` and `a/x`), keep only the first in sorted order."""
    assert _kept(tmp_path, fold, "a", "a/x", "A/x", "be\u0301", "b\u00e9") == kept


@pytest.mark.parametrize("fold", [FoldRule(), FoldRule(case=True)])
def test_a_file_below_a_deeper_file_is_dropped(fold: FoldRule, tmp_path: Path) -> None:
    """A name is dropped when any of its directories, at any depth, is another file: a
    file named like a directory two levels down (`q/r` of `q/r/s/t`) as well as one at
    the top; a name that only begins like one (`q/rs`) stays."""
    assert _kept(tmp_path, fold, "a", "a/b/c", "q/r", "q/r/s/t", "q/rs",
                 "x/y/z") == ["a", "q/r", "q/rs", "x/y/z"]


# -- real servers ---------------------------------------------------------------------------


def test_recursive_tree_from_proftpd(world_readable: Path, tmp_path: Path) -> None:
    """proftpd's tree lands whole (its MLSD lists the directories); a second run fetches
    nothing and `status` counts the nested files as final, none extra."""
    remote = world_readable / "tree"
    files = make_remote_tree(remote)
    _readable(world_readable)
    dest = tmp_path / "local"
    with real_server("proftpd", world_readable, tmp_path / "server") as server:
        url = server.url + "tree/"
        first = run("mirror", url, "--dest", str(dest), "--recursive", "--json")
        second = run("mirror", url, "--dest", str(dest), "--recursive", "--json")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert landed(dest) == files
    assert summary(second.stdout)["done"] == 0 and summary(second.stdout)["bytes_received"] == 0
    status = json.loads(run("status", str(dest), "--json").stdout.splitlines()[0])
    assert status["extra"] == 0 and status["missing"] == 0


def test_proftpd_symlinks_are_skipped_with_a_warning(world_readable: Path,
                                                    tmp_path: Path) -> None:
    """proftpd's MLSD names a link `type=OS.unix=symlink` (RFC 3659's example says `slink`):
    it was taken for "neither file nor directory" and skipped without a word."""
    remote = world_readable / "links"
    remote.mkdir()
    (remote / "a.txt").write_bytes(b"a\n")
    (remote / "link.txt").symlink_to("a.txt")
    _readable(world_readable)
    dest = tmp_path / "local"
    with real_server("proftpd", world_readable, tmp_path / "server") as server:
        result = run("mirror", server.url + "links/", "--dest", str(dest))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skipping symlink entry 'link.txt'" in result.stderr
    assert landed(dest) == {"a.txt": b"a\n"}


def test_proftpd_real_directories_that_look_alike_are_told_apart_by_unique(
        world_readable: Path, tmp_path: Path) -> None:
    """`x/` holding only `x/`, the same minute as the start's `x/` (a tree unpacked with its
    times): directory-only look-alikes, taken for a loop, and nothing below was mirrored,
    exit 0. proftpd's MLSD gives each directory's `unique` (device and inode), which tells
    them apart; a link back up is still not followed."""
    remote = world_readable / "alike"
    (remote / "x/x/x").mkdir(parents=True)
    (remote / "x/x/g.txt").write_bytes(b"g\n")
    (remote / "x/x/x/f.txt").write_bytes(b"f\n")
    (remote / "x/x/x/up").symlink_to("..")
    stamp = 1_790_000_000
    for folder in (remote / "x", remote / "x/x", remote / "x/x/x"):
        os.utime(folder, (stamp, stamp))
    _readable(world_readable)
    dest = tmp_path / "local"
    with real_server("proftpd", world_readable, tmp_path / "server") as server:
        result = run("mirror", server.url + "alike/", "--dest", str(dest), "--recursive")
    assert result.returncode == 0, result.stdout + result.stderr
    assert landed(dest) == {"x/x/g.txt": b"g\n", "x/x/x/f.txt": b"f\n"}
    assert "loop" not in result.stderr and "skipping symlink entry 'x/x/x/up'" in result.stderr


def test_vsftpd_directory_it_may_not_read_keeps_its_files_under_delete(
        world_readable: Path, tmp_path: Path) -> None:
    """vsftpd (LIST, no MLSD) lists a directory it may not read as that directory's own
    line, and a missing one as nothing, both with "226 Directory send OK": once `secret/`
    turned unreadable, `--delete` removed its files (exit 0), and a mistyped start directory
    mirrored nothing with exit 0. Now such a directory is one that could not be listed:
    its files stay and the run fails; so does the missing start directory."""
    remote = world_readable / "tree"
    (remote / "keep").mkdir(parents=True)
    (remote / "secret").mkdir()
    (remote / "keep/k.txt").write_bytes(b"keep\n")
    secret = {f"secret/s{i}.txt": f"secret {i}\n".encode() for i in range(3)}
    for name, data in secret.items():
        (remote / name).write_bytes(data)
    (world_readable / "to-nowhere").symlink_to("tree/nowhere")  # (listed as its own line)
    _readable(world_readable)
    dest = tmp_path / "local"
    with real_server("vsftpd", world_readable, tmp_path / "server") as server:
        url = server.url + "tree/"
        first = run("mirror", url, "--dest", str(dest), "--recursive")
        (remote / "secret").chmod(0o700)  # not the anonymous user's to read any more
        second = run("mirror", url, "--dest", str(dest), "--recursive", "--delete",
                     "--max-delete", "100%")
        missing_start = run("mirror", server.url + "no-such-dir/", "--dest",
                            str(tmp_path / "nothing"))
        linked_start = run("mirror", server.url + "to-nowhere/", "--dest",
                           str(tmp_path / "linked"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert landed(dest) == {"keep/k.txt": b"keep\n", **secret}
    assert second.returncode == 1, second.stdout + second.stderr
    assert "secret" in second.stdout + second.stderr
    assert landed(dest) == {"keep/k.txt": b"keep\n", **secret}
    assert missing_start.returncode == 1, missing_start.stdout + missing_start.stderr
    assert "cannot list" in missing_start.stderr
    assert linked_start.returncode == 1, linked_start.stdout + linked_start.stderr


@pytest.mark.parametrize("style", ["table", "pre"])
def test_recursive_tree_from_apache_autoindex(world_readable: Path, tmp_path: Path,
                                              style: str) -> None:
    """Apache's autoindex pages of a tree: every file lands at its path (directory links
    followed below the start only, never the parent link), `--max-depth 1` stops a level
    down, and a second run transfers nothing."""
    if reason := missing("apache"):
        pytest.skip(reason)
    docroot = world_readable / "www"
    files = make_remote_tree(docroot / "tree")
    (docroot / "sibling").mkdir()
    (docroot / "sibling/not-below.xml").write_bytes(b"beside the start directory")
    _readable(world_readable)
    dest = tmp_path / "local"
    with apache(docroot, style=style) as port:
        url = f"http://127.0.0.1:{port}/tree/"
        first = run("mirror", url, "--dest", str(dest), "--recursive", "--json")
        second = run("mirror", url, "--dest", str(dest), "--recursive", "--json")
        shallow = run("mirror", url, "--dest", str(tmp_path / "shallow"), "--max-depth", "1")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert landed(dest) == files
    assert summary(second.stdout)["done"] == 0 and summary(second.stdout)["bytes_received"] == 0
    assert shallow.returncode == 0, shallow.stderr
    assert sorted(landed(tmp_path / "shallow")) == ["a/one.xml", "top.xml", "z/caf\u00e9.xml"]


def test_recursive_tree_from_mini_httpd_whose_pages_do_not_mark_directories(
        world_readable: Path, tmp_path: Path) -> None:
    """mini_httpd links a subdirectory as `sub`, not `sub/`, and redirects a request for it
    to `sub/`: each name its pages show is asked with HEAD, a redirect to `NAME/` making it
    a directory. The tree lands whole; without --recursive the top directory's files land
    and its directories are left, exit 0 both; a second run asks HEAD of the directories
    only (the manifest vouches for the files), fetching nothing; `ls` shows them as dirs."""
    if reason := missing("mini_httpd"):
        pytest.skip(reason)
    docroot = world_readable / "www"
    files = make_remote_tree(docroot / "tree")
    # mini_httpd's redirect names the directory decoded, as UTF-8 bytes
    for odd in ("plus+\u00e9 x", "pct%41;x", "q?x", "h#x"):
        (docroot / "tree" / odd).mkdir()
        files[f"{odd}/in.xml"] = f"in {odd}\n".encode()
        (docroot / "tree" / odd / "in.xml").write_bytes(files[f"{odd}/in.xml"])
    _readable(world_readable)
    dest, log = tmp_path / "local", tmp_path / "access.log"
    with mini_httpd(docroot, log) as port:
        url = f"http://127.0.0.1:{port}/tree/"
        first = run("mirror", url, "--dest", str(dest), "--recursive", "--json")
        listed = run("ls", url, "--json")
        log.write_text("")
        flat = run("mirror", url, "--dest", str(tmp_path / "flat"), "--json",
                   "--include", "*.xml")
        flat_asked = _heads(log)
        log.write_text("")
        second = run("mirror", url, "--dest", str(dest), "--recursive", "--json")
        heads = _heads(log)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    assert landed(dest) == files
    assert flat.returncode == 0, flat.stdout[-2000:] + flat.stderr
    assert landed(tmp_path / "flat") == {"top.xml": files["top.xml"]}
    kinds = {e["name"]: e["kind"] for e in map(json.loads, listed.stdout.splitlines())
             if "kind" in e}
    assert kinds == {"a": "dir", "empty": "dir", "top.xml": "file", "z": "dir",
                     "plus+\u00e9 x": "dir", "pct%41;x": "dir", "q?x": "dir", "h#x": "dir"}
    # a flat run asks nothing of a name it would neither select nor enter
    assert flat_asked == {"/tree/", "/tree/top.xml"}
    assert second.returncode == 0, second.stderr
    assert summary(second.stdout)["done"] == 0 and summary(second.stdout)["bytes_received"] == 0
    assert heads == {"/tree/", "/tree/a", "/tree/a/b", "/tree/a/b/c", "/tree/empty",
                     "/tree/z", "/tree/plus+\u00e9 x", "/tree/pct%41;x", "/tree/q?x",
                     "/tree/h#x"}


def _heads(log: Path) -> set[str]:
    """The paths mini_httpd's access log shows asked with HEAD (decoded, as it logs them)."""
    requests = [line.split('"')[1] for line in log.read_text().splitlines()]
    return {r.split(" ", 1)[1].rsplit(" ", 1)[0] for r in requests if r.startswith("HEAD ")}


def test_a_file_mini_httpd_shows_that_becomes_a_directory_is_entered(
        world_readable: Path, tmp_path: Path) -> None:
    """A name recorded as a file whose page now shows another size is asked again with
    HEAD: become a directory, it is entered (its first run fails its file, the old file in
    the way, and --delete removes that; the next lands it), never failed for good."""
    if reason := missing("mini_httpd"):
        pytest.skip(reason)
    remote = world_readable / "www" / "t"
    remote.mkdir(parents=True)
    (remote / "x").write_bytes(b"a file\n")
    kept = {f"keep{i}.xml": b"kept\n" for i in range(2)}  # (--max-delete: 1 of 3 goes)
    for name, data in kept.items():
        (remote / name).write_bytes(data)
    _readable(world_readable)
    dest = tmp_path / "local"
    with mini_httpd(world_readable / "www") as port:
        url = f"http://127.0.0.1:{port}/t/"
        first = run("mirror", url, "--dest", str(dest), "--recursive")
        (remote / "x").unlink()
        (remote / "x").mkdir()
        (remote / "x" / "y.xml").write_bytes(b"below\n")
        _readable(world_readable)
        runs = [run("mirror", url, "--dest", str(dest), "--recursive", "--delete")
                for _ in range(2)]
    assert first.returncode == 0, first.stderr
    assert runs[0].returncode == 1  # the old file x in the way of x/y.xml
    assert "is not a directory" in runs[0].stdout + runs[0].stderr
    assert runs[1].returncode == 0, runs[1].stdout + runs[1].stderr
    assert landed(dest) == {"x/y.xml": b"below\n", **kept}


@pytest.mark.parametrize("disable_mlsd", [False, True], ids=["mlsd", "list"])
def test_names_with_spaces_at_their_ends_are_mirrored_as_named(tmp_path: Path,
                                                                 disable_mlsd: bool) -> None:
    """A name that ends (or begins) with a space keeps it: MLSD's name was stripped of its
    trailing spaces, so that `note.txt ` was asked for as `note.txt` (550) and `dir ` could
    not be listed, at every run."""
    root, dest = tmp_path / "remote", tmp_path / "dest"
    files = {"note.txt ": b"trailing\n", " lead.txt": b"leading\n", "dir /in.txt": b"in\n",
             "plain.txt": b"plain\n"}
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    with FaultyFTPServer(root, disable_mlsd=disable_mlsd) as server:
        result = run("mirror", server.url, "--dest", str(dest), "--recursive")
    assert result.returncode == 0, result.stderr
    got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
           if p.is_file() and ".pubmed-mirror" not in p.relative_to(dest).parts}
    assert got == files


def test_a_companion_no_longer_listed_goes_when_its_file_is_fetched_again(tmp_path: Path
                                                                         ) -> None:
    """`a/x.bin.md5` travelled with `a/x.bin`; the server drops it and then changes the
    file: the new file lands and the old NAME.md5, which no longer says what it is, goes.
    Before, `verify` called the right file corrupt and every run fetched it again."""
    root, dest = tmp_path / "remote", tmp_path / "dest"
    (root / "a").mkdir(parents=True)
    old = b"old version\n"
    (root / "a" / "x.bin").write_bytes(old)
    (root / "a" / "x.bin.md5").write_bytes(_md5_line("x.bin", old))
    (dest / "a").mkdir(parents=True)
    (dest / "a" / "y.bin.md5").write_bytes(b"mine\n")  # not the mirror's: stays
    (root / "a" / "y.bin").write_bytes(b"y\n")
    with FaultyFTPServer(root) as server:
        assert run("mirror", server.url, "--dest", str(dest), "--recursive").returncode == 0
        assert (dest / "a" / "x.bin.md5").exists()
        (root / "a" / "x.bin.md5").unlink()
        (root / "a" / "x.bin").write_bytes(b"the new version, longer\n")
        changed = run("mirror", server.url, "--dest", str(dest), "--recursive")
        assert changed.returncode == 0, changed.stderr
        again = run("mirror", server.url, "--dest", str(dest), "--recursive", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["done"] == 0
    assert (dest / "a" / "x.bin").read_bytes() == b"the new version, longer\n"
    assert not (dest / "a" / "x.bin.md5").exists()
    assert (dest / "a" / "y.bin.md5").read_bytes() == b"mine\n"
    checked = run("verify", str(dest))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_delete_keeps_what_apache_stops_showing_but_still_has(world_readable: Path,
                                                               tmp_path: Path) -> None:
    """Apache's index leaves out a directory it may no longer read: its files are still
    on the server (403), and `--delete` keeps them, naming why; a directory and a file
    removed from the server (404) go. Before, the hidden directory's files were deleted."""
    if reason := missing("apache"):
        pytest.skip(reason)
    docroot = world_readable / "www"
    files = {"top.xml": b"top\n", "gone.xml": b"gone\n", "restricted/data.xml": b"data\n",
             "old/a.xml": b"a\n", "old/deep/b.xml": b"b\n", "kept/c.xml": b"c\n"}
    for name, data in files.items():
        (docroot / "tree" / name).parent.mkdir(parents=True, exist_ok=True)
        (docroot / "tree" / name).write_bytes(data)
    _readable(world_readable)
    dest = tmp_path / "local"
    with apache(docroot) as port:
        url = f"http://127.0.0.1:{port}/tree/"
        assert run("mirror", url, "--dest", str(dest), "--recursive").returncode == 0
        (docroot / "tree/restricted").chmod(0o700)  # root's: Apache (www-data) cannot read
        (docroot / "tree/gone.xml").unlink()
        shutil.rmtree(docroot / "tree/old")
        result = run("mirror", url, "--dest", str(dest), "--recursive", "--delete",
                     "--max-delete", "100%", "--json")
    assert result.returncode == 0, result.stderr
    assert landed(dest) == {n: files[n] for n in ("top.xml", "restricted/data.xml",
                                                  "kept/c.xml")}
    assert "restricted/data.xml: not deleted" in result.stderr and "403" in result.stderr
    assert sorted(summary(result.stdout)["deleted"]) == ["gone.xml", "old/a.xml",
                                                         "old/deep/b.xml"]


def test_a_real_directory_that_looks_like_its_parent_is_entered(tmp_path: Path) -> None:
    """On http.server's pages (names only) `x/` lists what the start lists (`readme.txt`,
    `x/`), but its `readme.txt` is another file (HEAD says so): a real directory, entered,
    and its files land. Before, it was taken for a loop: files left out, exit 0."""
    remote, dest = tmp_path / "remote", tmp_path / "local"
    files = {"readme.txt": b"the top readme\n", "x/readme.txt": b"another, longer readme\n",
             "x/x/data.txt": b"deep data\n"}
    for name, data in files.items():
        (remote / name).parent.mkdir(parents=True, exist_ok=True)
        (remote / name).write_bytes(data)
    with python_http(remote) as port:
        result = run("mirror", f"http://127.0.0.1:{port}/", "--dest", str(dest),
                     "--recursive")
    assert result.returncode == 0, result.stderr
    assert "not entering" not in result.stderr
    assert landed(dest) == files


@pytest.mark.parametrize("server_name", ["vsftpd", "proftpd", "apache"])
def test_a_name_that_is_not_utf8_is_skipped_with_a_warning(
        world_readable: Path, tmp_path: Path, server_name: str) -> None:
    """A file whose name is not UTF-8 (bytes 0xff 0xfe) is skipped with a warning naming
    it, and the rest lands, exit 0: over vsftpd's LIST (a traceback before, nothing
    mirrored), proftpd's MLSD (exit 1 at every run before) and Apache's pages (the name
    asked for as U+FFFD, 404, at every run before)."""
    if server_name == "apache" and (reason := missing("apache")):
        pytest.skip(reason)
    remote = world_readable / "nu"
    remote.mkdir()
    (remote / "ok.txt").write_bytes(b"ok\n")
    with open(os.fsencode(remote) + b"/\xff\xfebin", "wb") as odd:
        odd.write(b"bad\n")
    _readable(world_readable)
    dest = tmp_path / "local"
    if server_name == "apache":
        with apache(world_readable) as port:
            result = run("mirror", f"http://127.0.0.1:{port}/nu/", "--dest", str(dest))
            listed = run("ls", f"http://127.0.0.1:{port}/nu/", "--json")
    else:
        with real_server(server_name, world_readable, tmp_path / "server") as server:
            result = run("mirror", server.url + "nu/", "--dest", str(dest))
            listed = run("ls", server.url + "nu/", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    refused = {e.get("refused") for e in map(json.loads, listed.stdout.splitlines())
               if e.get("name") not in ("ok.txt", None)}
    assert refused == {"not UTF-8"}, listed.stdout
    assert "is not UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert landed(dest) == {"ok.txt": b"ok\n"}
