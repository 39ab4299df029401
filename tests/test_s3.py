"""s3://BUCKET/PREFIX/ end to end: the installed command against moto's S3 server on
127.0.0.1, faults injected by a proxy in front of it (`s3server`)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import pytest

import pubmed_mirror
from pubmed_mirror import FileDone, MirrorOptions, S3Options, parse_source
from s3server import (
    S3Fault,
    S3FaultProxy,
    make_bucket,
    moto_server,
    put_multipart,
    s3_client,
    slow_metadata_service,
)
from test_trees import events
from webfaults import ConnectionLog

_names = itertools.count()
_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDTESTING", "AWS_SECRET_ACCESS_KEY": "secret",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
SMALL = b"<article>one</article>\n" * 100
ODD = b"odd name\n" * 7
MULTI = [os.urandom(5 << 20), os.urandom(300_000)]
FILES = {"a.xml": SMALL, "b c+d&e=f.txt": ODD, "multi.bin": b"".join(MULTI)}


def command() -> list[str]:
    exe = Path(sys.executable).parent / "pubmed-mirror"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "pubmed_mirror"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=55,
                          env={**clean, **(env or {})}, check=False)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def client(moto: str) -> Any:
    return s3_client(moto)


@pytest.fixture
def bucket(client: Any) -> str:
    """A public bucket holding FILES under data/ (multi.bin in two parts) and a key
    outside the prefix."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for key, data in FILES.items():
        if key == "multi.bin":
            put_multipart(client, name, f"data/{key}", MULTI)
        else:
            client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    client.put_object(Bucket=name, Key="other/x.txt", Body=b"not mirrored")
    return name


@pytest.fixture
def proxy(moto: str) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(moto).running() as server:
        yield server


def mirror(proxy: S3FaultProxy, bucket: str, dest: Path, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run("mirror", f"s3://{bucket}/data/", "--s3-endpoint", proxy.url, "--dest",
               str(dest), "--retries", "3", *args, env=env)


def assert_files(dest: Path, files: dict[str, bytes]) -> None:
    """DEST holds exactly `files` (relative paths), our state directory aside."""
    got = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*")
           if p.is_file() and ".pubmed-mirror" not in p.relative_to(dest).parts}
    assert got == files


def object_gets(proxy: S3FaultProxy, bucket: str) -> list[str]:
    return [s.key(bucket) or "" for s in proxy.seen
            if s.method == "GET" and not s.listing]


def test_s3_mirror_then_nothing_then_only_the_changed_object(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path) -> None:
    """A bucket prefix mirrors byte for byte (single-part ETags checked as MD5s), a second
    run transfers nothing, and after one object changes only it is fetched again."""
    dest = tmp_path / "dest"
    first = mirror(proxy, bucket, dest)
    assert first.returncode == 0, first.stderr
    assert_files(dest, FILES)
    assert "MD5 ok" in first.stdout  # the single-part objects were checked
    proxy.seen.clear()
    second = mirror(proxy, bucket, dest, "--json")
    assert second.returncode == 0, second.stderr
    assert object_gets(proxy, bucket) == []
    assert [s.method for s in proxy.seen] == ["GET"]  # one listing page, nothing else
    changed = b"<article>two</article>\n" * 120
    client.put_object(Bucket=bucket, Key="data/a.xml", Body=changed)
    proxy.seen.clear()
    third = mirror(proxy, bucket, dest)
    assert third.returncode == 0, third.stderr
    assert object_gets(proxy, bucket) == ["data/a.xml"]
    assert_files(dest, {**FILES, "a.xml": changed})


async def test_s3_from_the_library_runs_again_and_again(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """The library API mirrors an S3 prefix (pipelined: files fed while the listing goes on)
    into fresh DESTs run after run. Its feeder once asked the staged listing before the
    listing had made it: most runs in one process failed with "no such table"."""
    for i in range(8):
        dest = tmp_path / f"dest{i}"
        source = parse_source(f"s3://{bucket}/data/", s3=S3Options(endpoint=proxy.url))
        report = await pubmed_mirror.mirror(source, dest)
        assert not report.failed, report.failed
        assert sorted(f.name for f in report.done) == sorted(FILES)
        assert_files(dest, FILES)


async def test_s3_library_run_cancelled_while_files_are_fed_ends_cancelled_and_resumes(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A library run over S3 whose task is cancelled (as `asyncio.wait_for` does) while its
    listing's files still wait for a worker ends cancelled, not with an error, leaves no
    wrong final file, and the next run completes the mirror."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    keys = {f"k{i:03d}.txt": f"object {i}\n".encode() * 50 for i in range(60)}
    for key, data in keys.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    source = parse_source(f"s3://{name}/data/", s3=S3Options(endpoint=proxy.url))
    dest = tmp_path / "dest"
    first = asyncio.Event()
    # one session: the early feeder waits on a full queue while the first file lands
    run = asyncio.create_task(pubmed_mirror.mirror(
        source, dest, MirrorOptions(concurrency=1),
        on_event=lambda e: first.set() if isinstance(e, FileDone) else None))
    await asyncio.wait([run, asyncio.create_task(first.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    assert not run.done()  # cancelled mid-way, not after the run
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    landed = {p.name: p.read_bytes() for p in dest.glob("k*.txt")}
    assert landed and all(data == keys[key] for key, data in landed.items())
    report = await pubmed_mirror.mirror(source, dest)
    assert not report.failed, report.failed
    assert_files(dest, keys)


def test_s3_etag_recorded_and_a_changed_etag_refetches(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """The manifest records each object's ETag, and an ETag that no longer matches the
    listing (same size and time) makes the object fetched again."""
    dest = tmp_path / "dest"
    assert mirror(proxy, bucket, dest).returncode == 0
    manifest = dest / ".pubmed-mirror" / "manifest.sqlite"
    with closing(sqlite3.connect(manifest)) as db, db:
        etags = dict(db.execute("SELECT name, etag FROM files").fetchall())
        db.execute("UPDATE files SET etag = '\"0123\"' WHERE name = 'multi.bin'")
    assert etags["a.xml"] == f'"{hashlib.md5(SMALL).hexdigest()}"'
    assert etags["multi.bin"].endswith('-2"')
    proxy.seen.clear()
    again = mirror(proxy, bucket, dest)
    assert again.returncode == 0, again.stderr
    assert object_gets(proxy, bucket) == ["data/multi.bin"]
    assert_files(dest, FILES)


def test_s3_delete_removes_keys_gone_from_the_listing(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path) -> None:
    """With --delete, an object deleted from the bucket is deleted from DEST too."""
    dest = tmp_path / "dest"
    assert mirror(proxy, bucket, dest).returncode == 0
    client.delete_object(Bucket=bucket, Key="data/a.xml")
    result = mirror(proxy, bucket, dest, "--delete")
    assert result.returncode == 0, result.stderr
    assert_files(dest, {k: v for k, v in FILES.items() if k != "a.xml"})


def test_s3_a_users_own_md5_file_is_neither_trusted_nor_deleted(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path) -> None:
    """A NAME.md5 the user put beside a mirrored object (the bucket has none) is not the
    mirror's: `verify` judges the object by its ETag's MD5 alone (a wrong NAME.md5 failed
    it at every verify, and so had it fetched again by every mirror), and `--delete`
    removes the object gone from the bucket but leaves the user's file."""
    dest = tmp_path / "dest"
    assert mirror(proxy, bucket, dest).returncode == 0
    mine = {"a.xml.md5": b"my own notes\n", "multi.bin.md5": b"0" * 32 + b"  multi.bin\n"}
    for name, data in mine.items():
        (dest / name).write_bytes(data)
    checked = run("verify", str(dest))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "CORRUPT" not in checked.stdout
    client.delete_object(Bucket=bucket, Key="data/a.xml")
    proxy.seen.clear()
    result = mirror(proxy, bucket, dest, "--delete", "--max-delete", "100%")
    assert result.returncode == 0, result.stderr
    assert_files(dest, {k: v for k, v in FILES.items() if k != "a.xml"} | mine)
    assert object_gets(proxy, bucket) == []  # nothing fetched again


@pytest.mark.parametrize("mover", [[], ["--no-splice"]], ids=["splice", "recv"])
def test_s3_get_cut_short_is_resumed_with_range(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path, mover: list[str]) -> None:
    """A GET cut short mid-body is resumed from where it stopped with a Range request."""
    proxy.faults.append(S3Fault("cut", lambda s: s.key(bucket) == "data/multi.bin",
                                after=2 << 20))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, *mover)
    assert result.returncode == 0, result.stderr
    ranges = [s.headers.get("range") for s in proxy.gets(bucket, "data/multi.bin")]
    assert len(ranges) == 2 and ranges[0] == "bytes=0-"
    assert ranges[1] is not None and int(ranges[1][6:-1]) >= 1 << 20
    assert_files(dest, FILES)


@pytest.mark.parametrize("key", ["data/small.bin", "data/d/e/small.bin"])
def test_s3_small_object_cut_short_is_resumed_after_the_bytes_received(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path, key: str) -> None:
    """A small object, received into memory, whose GET is cut short keeps what arrived in
    its part: the retry asks only for the rest (Range, If-Range its ETag)."""
    data = os.urandom(100_000)
    client.put_object(Bucket=bucket, Key=key, Body=data)
    proxy.faults.append(S3Fault("cut", lambda s: s.key(bucket) == key, after=60_000))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 0, result.stdout
    gets = proxy.gets(bucket, key)
    assert len(gets) == 2 and gets[0].headers.get("range") == "bytes=0-"
    resumed = gets[1].headers.get("range") or ""
    assert 30_000 <= int(resumed[6:-1]) <= 60_000, resumed
    assert gets[1].headers.get("if-range") == client.head_object(Bucket=bucket,
                                                                   Key=key)["ETag"]
    assert_files(dest, {**FILES, key.removeprefix("data/"): data})
    assert not list(dest.rglob("*.part"))


@pytest.mark.parametrize("mover", [[], ["--no-splice"]], ids=["splice", "recv"])
def test_s3_small_objects_share_kept_alive_connections(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path,
        mover: list[str]) -> None:
    """Small objects cost one GET each on the sessions' kept-alive connections, never a
    connection of their own (on a far link, one more round trip per object)."""
    small = {f"s{i:02d}.bin": os.urandom(4096) for i in range(12)}
    for name, data in small.items():
        client.put_object(Bucket=bucket, Key=f"data/{name}", Body=data)
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--concurrency", "2", *mover)
    assert result.returncode == 0, result.stderr
    assert_files(dest, {**FILES, **small})
    asked = [s for s in proxy.seen if s.key(bucket) in {f"data/{n}" for n in small}]
    assert sorted(s.key(bucket) or "" for s in asked) == sorted(f"data/{n}" for n in small)
    assert {s.method for s in asked} == {"GET"}
    assert len({s.peer for s in asked}) <= 2


def test_s3_connections_are_made_while_the_listing_is_awaited(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """The sessions' connections are opened while the listing's first page is awaited, and
    their first GETs are sent on them: on a far link a first GET then costs one round trip,
    not two (three with TLS). No more connections than --concurrency."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    small = {f"s{i:02d}.bin": os.urandom(4096) for i in range(12)}
    for key, data in small.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    proxy.faults.append(S3Fault("delay", lambda s: s.listing, seconds=1.5))
    with ConnectionLog(proxy.port).running() as log:
        dest = tmp_path / "dest"
        result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", log.url, "--dest",
                     str(dest), "--concurrency", "4")
    assert result.returncode == 0, result.stderr
    assert_files(dest, small)
    listed = proxy.listings()[0].at
    assert len(log.accepted) == 4
    assert sum(at < listed + 1.0 for at in log.accepted) == 4  # the answer came at +1.5 s
    gets = [s for s in proxy.seen if s.method == "GET" and not s.listing]
    assert len({s.peer for s in gets}) == 4


def test_s3_a_run_waits_on_no_connection_made_ahead(
        moto: str, client: Any, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    """Connections made ahead (while the listing is awaited) are given up once every file
    is handed out: a no-op run over https ends after its listing, not when the TLS
    handshakes a slow server holds (40 s here) end or time out."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for i in range(3):
        client.put_object(Bucket=name, Key=f"data/s{i}.bin", Body=os.urandom(2000))
    with (S3FaultProxy(moto, tls=certificate).running() as proxy,
          ConnectionLog(proxy.port).running() as log):
        args = ("mirror", f"s3://{name}/data/", "--s3-endpoint",
                f"https://127.0.0.1:{log.port}", "--ca-file", str(certificate[0]), "--dest",
                str(tmp_path / "dest"), "--concurrency", "4", "--connect-timeout", "45",
                "--json")
        first = run(*args)
        assert first.returncode == 0, first.stderr
        before = len(log.accepted)
        log.hold, log.held_after = 40, before + 1  # the listing's goes through
        started = time.monotonic()
        again = run(*args)
        took = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.splitlines()[-1])["done"] == 0
    assert len(log.accepted) >= before + 2  # connections were made ahead, and held
    assert took < 20, took  # the handshakes held for 40 s were not waited on


def test_s3_a_path_too_long_for_this_system_fails_that_object_only(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A key whose path under DEST is longer than the system takes (4096 bytes; S3
    compatible servers may take keys over AWS's 1,024): that object fails, naming why,
    exit 1; the others land. Before, the OSError ended the run, at every run."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    deep = "/".join(f"{i:02d}" + "x" * 198 for i in range(19)) + "/deep.xml"
    files = {"a.xml": b"a\n", "z/b.xml": b"b\n", deep: b"deep\n"}
    for key, data in files.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    dest = tmp_path / "d" / ("e" * 200) / ("f" * 200)
    assert len(os.fsencode(dest / deep)) > 4096
    result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest), "--json")
    assert result.returncode == 1, result.stderr
    failed = [e for e in map(json.loads, result.stdout.splitlines())
              if e.get("event") == "file_failed"]
    assert [e["name"] for e in failed] == [deep]
    assert "too long" in failed[0]["reason"]
    assert_files(dest, {n: d for n, d in files.items() if n != deep})
    assert "Traceback" not in result.stderr


async def test_s3_mirrors_of_one_bucket_on_a_client_share_its_connection_cap(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """Two mirrors of one bucket's prefixes on one MirrorClient (as pmc:metadata and
    pmc:articles) share the client's cap on connections to that server: never more than 3
    open at once (4 seen by the relay, which may see a close after the next connect).
    Before, each s3:// source had a cap of its own: up to 6."""
    from pubmed_mirror import MirrorClient

    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for prefix in ("one", "two"):
        for i in range(12):
            client.put_object(Bucket=name, Key=f"{prefix}/o{i}.bin", Body=os.urandom(3000))
    proxy.faults.append(S3Fault("delay", lambda s: s.listing, seconds=0.5))
    proxy.faults.append(S3Fault("delay", lambda s: s.listing, seconds=0.5))
    with ConnectionLog(proxy.port).running() as log:
        async with MirrorClient(concurrency=3) as mirrors, anyio.create_task_group() as tg:
            for prefix in ("one", "two"):
                source = parse_source(f"s3://{name}/{prefix}/",
                                      s3=S3Options(endpoint=log.url))
                tg.start_soon(mirrors.mirror, source, tmp_path / prefix,
                              MirrorOptions(concurrency=6))
    assert sorted(p.name for p in (tmp_path / "one").glob("*.bin")) == sorted(
        f"o{i}.bin" for i in range(12))
    assert len(list((tmp_path / "two").glob("*.bin"))) == 12
    assert log.most_open <= 4


def test_s3_an_empty_folder_marker_gives_way_to_the_files_below_it(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """An empty object named as a directory of other keys (`m` beside `m/x.bin`: a folder
    marker written without its `/`) is skipped with a warning and the files below it land,
    on a fresh DEST and on one that held them before the marker came (where `m` failed at
    every run, 'Is a directory'). A non-empty object named so still keeps its place."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    below = {"m/x.bin": b"x" * 100, "m/y.bin": b"y" * 200}
    for key, data in below.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    held = tmp_path / "held"
    before = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(held))
    assert before.returncode == 0, before.stderr
    client.put_object(Bucket=name, Key="data/m", Body=b"")
    client.put_object(Bucket=name, Key="data/n", Body=b"file n\n")
    client.put_object(Bucket=name, Key="data/n/z.bin", Body=b"z")
    for dest in (held, tmp_path / "fresh"):
        result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                     str(dest))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "'m': an empty object named as the directory of 'm/x.bin'" in result.stderr
        assert_files(dest, {**below, "n": b"file n\n"})


def test_s3_a_folder_marker_mirrored_alone_gives_way_once_files_come_below_it(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """An empty object mirrored while nothing was below it (an empty file `m` in DEST, the
    run's own), then keys put below it on the server: the next run removes that empty file
    and lands them (before, every run failed `m/x.bin`, "not a directory", with or without
    --delete). A file the user wrote into such an `n` is not theirs to remove: it stays and
    the files below it fail, saying so."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for key in ("m", "n"):
        client.put_object(Bucket=name, Key=f"data/{key}", Body=b"")
    client.put_object(Bucket=name, Key="data/z.bin", Body=b"z")
    dest = tmp_path / "dest"
    args = ("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest", str(dest))
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert (dest / "m").read_bytes() == b"" and (dest / "n").is_file()
    (dest / "n").write_bytes(b"the user's own words\n")
    client.put_object(Bucket=name, Key="data/m/x.bin", Body=b"x" * 100)
    client.put_object(Bucket=name, Key="data/n/y.bin", Body=b"y")
    second = run(*args)
    assert second.returncode == 1, second.stdout + second.stderr
    assert (dest / "m" / "x.bin").read_bytes() == b"x" * 100
    assert (dest / "n").read_bytes() == b"the user's own words\n"
    client.put_object(Bucket=name, Key="data/k/", Body=b"bytes in a key ending in '/'")
    third = run(*args)
    assert "skipping entry 'k/': a key ending in '/' (28 bytes)" in third.stderr
    assert "n/y.bin" in second.stdout + second.stderr
    assert run(*args, "--dry-run").returncode == 0
    status = run("status", str(dest))
    assert "m/x.bin" not in status.stdout


def test_s3_a_folder_marker_gives_way_only_in_dest_and_for_a_file_selected_below_it(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """The empty file of a folder marker is not removed behind a link (the user moved the
    directory out of DEST and linked it back: the file there is outside DEST), nor when no
    file selected lands below it (`--exclude 'm/*'`): found by review, each removed."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for key in ("sub/m", "m"):
        client.put_object(Bucket=name, Key=f"data/{key}", Body=b"")
    client.put_object(Bucket=name, Key="data/sub/z.bin", Body=b"z")
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    args = ("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest", str(dest),
            "--exclude", "m/*")
    assert run(*args).returncode == 0
    os.rename(dest / "sub", outside)
    (dest / "sub").symlink_to(outside)
    for key in ("sub/m/x.bin", "m/x.bin"):
        client.put_object(Bucket=name, Key=f"data/{key}", Body=b"x")
    second = run(*args)
    assert second.returncode == 1, second.stdout + second.stderr  # sub/m/x.bin: behind a link
    assert (outside / "m").read_bytes() == b"" and (dest / "m").read_bytes() == b""
    assert "removed" not in second.stderr


async def test_s3_idle_sessions_of_a_region_left_are_not_used(
        proxy: S3FaultProxy, bucket: str) -> None:
    """Sessions warmed (made ahead, idle) before the bucket's region was learnt are not
    taken for a request: each is closed and one opened for the region the bucket is in."""
    from pubmed_mirror import SessionPool

    source = parse_source(f"s3://{bucket}/data/", s3=S3Options(endpoint=proxy.url))
    transport = source.transport(connect_timeout=5, stall_timeout=5)
    async with SessionPool(transport, size=3) as pool:
        async with pool.session() as first:
            await pool.warm()
        assert pool.stats.idle == 3 and pool.stats.logins == 3
        transport.moved("eu-west-1")  # (what a listing answered 301 does)
        async with pool.session() as session:
            entry = await session.stat("data/a.xml")
            assert session.healthy and session is not first
        assert entry.size == len(SMALL)
        assert pool.stats.logins == 4 and pool.stats.idle == 1


def test_s3_corrupt_single_part_object_is_refetched(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """A single-part object whose bytes do not hash to its ETag is fetched again from 0."""
    proxy.faults.append(S3Fault("corrupt", lambda s: s.key(bucket) == "data/a.xml"))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 0, result.stderr
    assert [s.headers.get("range") for s in proxy.gets(bucket, "data/a.xml")] == [
        "bytes=0-", "bytes=0-"]
    assert_files(dest, FILES)


def test_s3_kms_objects_are_checked_without_their_etag(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path) -> None:
    """Objects encrypted with SSE-KMS, whose ETag looks like an MD5 and is not one, become
    final all the same, checked by their own checksum: the first ones are fetched twice
    (their downloads did not match; a HEAD says why), the later ones are asked by a HEAD
    before their only GET, and a second run transfers nothing."""
    kms = {f"data/k{i}.bin": os.urandom(3000 + i) for i in range(4)}
    for key, data in kms.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    proxy.kms.update(kms)
    dest = tmp_path / "dest"
    # signed, as S3 serves KMS-encrypted objects to signed requests only
    signed = ("--s3-sign", "--concurrency", "1")
    result = mirror(proxy, bucket, dest, *signed, env=_CREDENTIALS)
    assert result.returncode == 0, result.stderr
    assert_files(dest, {**FILES, **{k.removeprefix("data/"): v for k, v in kms.items()}})
    gets = [len(proxy.gets(bucket, k)) for k in sorted(kms)]
    assert gets[0] == 2 and gets[-1] == 1 and sum(gets) <= len(kms) + 2, gets  # 2 in flight
    heads = [s.key(bucket) for s in proxy.heads(bucket)]
    assert all(heads.count(k) == 1 for k in kms), heads
    warned = [line for line in result.stderr.splitlines() if "WARNING" in line
              and "encrypted with SSE-KMS, so its ETag is not an MD5: checked by its own "
              "checksum" in line]
    assert len(warned) == 1, result.stderr  # once a run, not once an object
    proxy.seen.clear()
    again = mirror(proxy, bucket, dest, *signed, env=_CREDENTIALS)
    assert again.returncode == 0, again.stderr
    assert object_gets(proxy, bucket) == []
    checked = run("verify", str(dest))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_s3_kms_object_whose_head_fails_is_asked_again(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path) -> None:
    """A KMS object whose HEAD (asked after its download did not match its ETag) fails
    with a 500 is asked again at the next attempt, not downloaded against its ETag once
    more: two GETs, two HEADs."""
    data = os.urandom(5000)
    client.put_object(Bucket=bucket, Key="data/k.bin", Body=data)
    proxy.kms.add("data/k.bin")
    proxy.faults.append(S3Fault("error", lambda s: s.method == "HEAD"
                                and s.key(bucket) == "data/k.bin"))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--s3-sign", env=_CREDENTIALS)
    assert result.returncode == 0, result.stderr
    assert (dest / "k.bin").read_bytes() == data
    assert len(proxy.gets(bucket, "data/k.bin")) == 2
    assert [s.status for s in proxy.heads(bucket) if s.key(bucket) == "data/k.bin"] == [
        500, 200]


def test_s3_kms_local_copy_is_checked_by_the_objects_checksum(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path) -> None:
    """In a bucket found to hold KMS objects, a local copy of one with the listed size and
    time but other bytes (nothing in the manifest vouches for it) is checked by the object's
    own checksum, found wrong and fetched again; a right copy is kept unfetched."""
    kms = {f"data/k{i}.bin": os.urandom(4000) for i in range(4)}
    for key, data in kms.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    proxy.kms.update(kms)
    dest = tmp_path / "dest"
    dest.mkdir()
    for key, local in (("data/k2.bin", os.urandom(4000)), ("data/k3.bin", kms["data/k3.bin"])):
        path = dest / key.removeprefix("data/")
        path.write_bytes(local)
        when = client.head_object(Bucket=bucket, Key=key)["LastModified"].timestamp()
        os.utime(path, (when, when))
    result = mirror(proxy, bucket, dest, "--s3-sign", "--concurrency", "1", env=_CREDENTIALS)
    assert result.returncode == 0, result.stderr
    assert_files(dest, {**FILES, **{k.removeprefix("data/"): v for k, v in kms.items()}})
    assert "k2.bin: local copy does not match its CRC32" in result.stderr
    assert len(proxy.gets(bucket, "data/k2.bin")) == 1
    assert proxy.gets(bucket, "data/k3.bin") == []


def test_s3_always_corrupt_object_fails_cleanly(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """An object corrupt at every attempt fails the run (exit 1) and leaves no final file."""
    for _ in range(4):
        proxy.faults.append(S3Fault("corrupt", lambda s: s.key(bucket) == "data/a.xml"))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 1
    assert "MD5" in result.stdout + result.stderr
    assert len(proxy.gets(bucket, "data/a.xml")) == 4
    assert not (dest / "a.xml").exists()
    assert_files(dest, {k: v for k, v in FILES.items() if k != "a.xml"})


def test_s3_slowdown_pauses_and_is_not_a_failure(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """503 SlowDown with Retry-After pauses the requests that follow for that long, and
    the run still succeeds."""
    proxy.faults.append(S3Fault("slowdown", lambda s: s.key(bucket) == "data/a.xml",
                                seconds=2))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 0, result.stderr
    refused = next(s for s in proxy.seen if s.status == 503)
    again = [s.at - refused.at for s in proxy.gets(bucket, "data/a.xml")][1:]
    assert len(again) == 1 and again[0] >= 1.9
    # no session sent anything during the pause (those in flight when it began aside)
    assert not [s for s in proxy.seen if 0.3 < s.at - refused.at < 1.9]
    assert_files(dest, FILES)


def test_s3_slowdowns_in_a_row_spend_no_retries(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """Eight 503 SlowDowns in a row to the listing and eight to one object, with
    `--retries 2`: each is waited out at the server's gate and asked again, none spends a
    retry, and the run succeeds (it failed at the third)."""
    for _ in range(8):
        proxy.faults.append(S3Fault("slowdown", lambda s: s.listing, seconds=0))
        proxy.faults.append(S3Fault("slowdown", lambda s: s.key(bucket) == "data/a.xml",
                                    seconds=0))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--retries", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not proxy.faults and len([s for s in proxy.seen if s.status == 503]) == 16
    assert_files(dest, FILES)


def test_s3_listing_page_error_is_retried_from_that_page(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A listing page that fails is asked again with its own continuation token: the
    first page is asked once."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    keys = {f"k{i:05d}.txt": f"{i}\n".encode() for i in range(1005)}
    for key, data in keys.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    proxy.faults.append(S3Fault("error", lambda s: s.listing
                                and "continuation-token" in s.query))
    dest = tmp_path / "dest"
    result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    pages = [(s.query.get("continuation-token"), s.status) for s in proxy.listings()]
    assert len(pages) == 3
    assert pages[0] == (None, 200)
    assert pages[1][1] == 500 and pages[2] == (pages[1][0], 200)
    assert result.stdout.count('"name": "k0') == 1005


def test_s3_no_such_bucket_is_one_line(proxy: S3FaultProxy, tmp_path: Path) -> None:
    """A bucket that does not exist: exit 1, one line saying so."""
    result = run("mirror", "s3://no-such-bucket/data/", "--s3-endpoint", proxy.url,
                 "--dest", str(tmp_path / "d"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no such bucket" in result.stderr


def test_s3_fatal_error_ends_the_json_stream_with_an_error_object(
        proxy: S3FaultProxy, tmp_path: Path) -> None:
    """With --json, a run that stops on a fatal error ends its stdout with one `error`
    object saying what the stderr line says."""
    result = run("mirror", "s3://no-such-bucket/data/", "--s3-endpoint", proxy.url,
                 "--dest", str(tmp_path / "d"), "--json")
    assert result.returncode == 1
    last = json.loads(result.stdout.splitlines()[-1])
    assert last == {"event": "error", "error": result.stderr.split("error: ", 1)[1].strip()}
    assert "no such bucket" in last["error"]


def test_s3_access_denied_anonymous_is_one_line(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """AccessDenied to an anonymous listing: exit 1, one line saying the bucket is not
    public and how credentials are given."""
    proxy.faults.append(S3Fault("deny", lambda s: s.listing))
    result = mirror(proxy, bucket, tmp_path / "d")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "not public" in result.stderr and "--s3-sign" in result.stderr
    assert len(proxy.listings()) == 1  # not retried


def test_s3_object_refused_to_anonymous_reads_says_it_is_not_public(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A bucket anyone may list but not read (moto's own 403 AccessDenied to an anonymous
    GET): the object fails saying it is not public and how credentials are given."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name, public=False)
    client.put_object(Bucket=name, Key="data/x.xml", Body=b"payload\n")
    result = mirror(proxy, name, tmp_path / "d", "--retries", "0", "--json")
    assert result.returncode == 1, result.stderr
    [failed] = [json.loads(line) for line in result.stdout.splitlines()
                if json.loads(line)["event"] == "file_failed"]
    assert failed["name"] == "x.xml" and "403" in failed["reason"]
    assert "not public" in failed["reason"] and "--s3-sign" in failed["reason"]


@pytest.mark.parametrize("args", [
    ["s3://Bad_Bucket/data/"],
    ["s3://ab/data/"],
    ["s3://bucket..x/data/"],
    ["s3://192.168.1.1/data/"],
    ["s3://bucket/data/?x=1"],
    ["s3:///data/"],
    ["s3://bucket/data/", "--s3-endpoint", "ftp://127.0.0.1:1"],
    ["s3://bucket/data/", "--s3-endpoint", "http://127.0.0.1:1/base"],
    ["s3://bucket/data/", "--s3-endpoint", "http://"],
    ["s3://bucket/data/", "--s3-endpoint", "http://127.0.0.1:99999"],
    ["s3://bucket/data/", "--s3-requester-pays"],
    ["s3://bucket/data/", "--concurrency", "65"],
    ["ftp://127.0.0.1/data/", "--s3-endpoint", "http://127.0.0.1:1"],
])
def test_s3_bad_input_exits_2_before_any_request(
        proxy: S3FaultProxy, tmp_path: Path, args: list[str]) -> None:
    """A malformed s3:// URL or --s3-* option: exit 2, one line, no request made."""
    endpoint = [] if "--s3-endpoint" in args or args[0].startswith("ftp") else [
        "--s3-endpoint", proxy.url]
    result = run("mirror", *args, *endpoint, "--dest", str(tmp_path / "d"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("pubmed-mirror")
    assert proxy.seen == []
    assert not (tmp_path / "d").exists()


def test_s3_signed_requests_carry_sigv4_and_requester_pays(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """--s3-sign signs every request (listing, GETs, the multipart object's checksum HEAD)
    with SigV4 from the AWS environment variables, and --s3-requester-pays says so in each."""
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--s3-sign", "--s3-requester-pays", env=_CREDENTIALS)
    assert result.returncode == 0, result.stderr
    assert_files(dest, FILES)
    assert [s.method for s in proxy.seen].count("HEAD") == 1 and len(proxy.seen) == 5
    head = next(s for s in proxy.seen if s.method == "HEAD")
    assert "x-amz-checksum-mode" in head.headers.get("authorization", "")  # signed too
    for seen in proxy.seen:
        auth = seen.headers.get("authorization", "")
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTESTING/"), seen
        assert "/us-east-1/s3/aws4_request" in auth
        assert seen.headers.get("x-amz-request-payer") == "requester"
        assert "x-amz-request-payer" in auth  # a signed header


async def test_s3_sign_resolves_credentials_without_blocking_the_event_loop(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed mirror whose credentials come from a slow instance metadata service (three
    answers, each 0.6 s late) signs with them and leaves the application's event loop free
    meanwhile: another task keeps running."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    with slow_metadata_service(0.6) as imds:
        monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        ticks: list[float] = []

        async def tick() -> None:
            while True:
                ticks.append(time.monotonic())
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            source = parse_source(f"s3://{bucket}/data/",
                                  s3=S3Options(endpoint=proxy.url, sign=True))
            report = await pubmed_mirror.mirror(source, tmp_path / "dest")
            tg.cancel_scope.cancel()
    assert not report.failed, report.failed
    assert_files(tmp_path / "dest", FILES)
    assert proxy.seen and all(s.headers.get("authorization", "").startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDIMDS/") for s in proxy.seen)
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 1.0  # on the loop: >= 1.8 s


def test_s3_sign_without_credentials_is_one_line_before_any_request(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """--s3-sign with no credentials anywhere in the chain: exit 1, one line saying how to
    give them, no request at the server, no DEST made."""
    env = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
           "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)}
    result = mirror(proxy, bucket, tmp_path / "dest", "--s3-sign", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "pubmed-mirror: error: --s3-sign found no AWS credentials: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and ~/.aws/credentials"]
    assert proxy.seen == []
    assert not (tmp_path / "dest").exists()


def test_s3_anonymous_requests_carry_no_credentials(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """Without --s3-sign no request is signed, even with AWS credentials in the
    environment."""
    env = {"AWS_ACCESS_KEY_ID": "AKIDTESTING", "AWS_SECRET_ACCESS_KEY": "secret"}
    assert mirror(proxy, bucket, tmp_path / "dest", env=env).returncode == 0
    assert proxy.seen and all("authorization" not in s.headers for s in proxy.seen)


def test_s3_hostile_keys_are_refused_and_the_rest_mirrored(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """Keys whose names must not become local paths (dot names, our own suffixes, control
    characters, `..` or empty components below the prefix, a component longer than a local
    name may be) are skipped, never requested, and the other objects, nested ones too, are
    mirrored."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    hostile = ["..", ".pubmed-mirror", "x.xml.part", "bad\x1b[31m.xml", "sub/../../evil",
               "sub//d.xml", "sub/.pubmed-mirror/e.xml", "sub/./f.xml",
               "L" * 256, "sub/" + "\u00e9" * 128,  # names over 255 bytes: no local file
               "../x.xml"]
    for key in [*hostile, "good.xml", "sub/c.xml"]:
        client.put_object(Bucket=name, Key=f"data/{key}", Body=b"payload\n")
    dest = tmp_path / "dest"
    result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest))
    assert result.returncode == 0, result.stderr
    assert sorted(object_gets(proxy, name)) == ["data/good.xml", "data/sub/c.xml"]
    assert result.stderr.count("skipping") == len(hostile), result.stderr  # once each
    assert_files(dest, {"good.xml": b"payload\n", "sub/c.xml": b"payload\n"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]


def _two_pages(client: Any) -> tuple[str, dict[str, bytes]]:
    """A public bucket of 1,005 small objects under data/: two listing pages."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    keys = {f"k{i:05d}.txt": f"object {i}\n".encode() for i in range(1005)}
    for key, data in keys.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    return name, keys


def test_s3_first_get_does_not_wait_for_the_last_listing_page(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """The first page's objects are fetched while the second listing page is still being
    answered, and every object is fetched once, byte for byte."""
    name, keys = _two_pages(client)
    delay = 3.0
    proxy.faults.append(S3Fault("delay", lambda s: s.listing
                                and "continuation-token" in s.query, seconds=delay))
    dest = tmp_path / "dest"
    result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest), "--concurrency", "8")
    assert result.returncode == 0, result.stderr
    assert_files(dest, keys)
    last_page = proxy.listings()[-1]
    assert "continuation-token" in last_page.query and len(proxy.listings()) == 2
    gets = [s for s in proxy.seen if s.method == "GET" and not s.listing]
    assert min(s.at for s in gets) < last_page.at + delay  # before its answer went out
    assert sorted(s.key(name) for s in gets) == sorted(f"data/{k}" for k in keys)


def test_s3_failed_listing_keeps_what_was_fetched_and_deletes_nothing(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A listing whose second page keeps failing fails the run as before and deletes
    nothing (with --delete), while the first page's objects fetched meanwhile stay, whole."""
    name, keys = _two_pages(client)
    dest = tmp_path / "dest"
    first = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                str(dest), "--include", "k00000.txt")
    assert first.returncode == 0, first.stderr
    client.delete_object(Bucket=name, Key="data/k00000.txt")  # a deletion candidate now
    proxy.faults.extend(S3Fault("error", lambda s: s.listing
                                and "continuation-token" in s.query) for _ in range(10))
    failed = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest), "--retries", "2", "--delete")
    assert failed.returncode == 1, failed.stderr
    assert "InternalError" in failed.stderr or "500" in failed.stderr
    assert (dest / "k00000.txt").read_bytes() == keys["k00000.txt"]
    fetched = {p.name: p.read_bytes() for p in dest.glob("k*.txt")}
    assert len(fetched) > 1  # the first page's objects came while the listing was retried
    assert all(data == keys[key] for key, data in fetched.items())


@pytest.mark.parametrize("split", ["clash", "pair"])
def test_s3_names_a_later_page_changes_are_planned_with_it(
        proxy: S3FaultProxy, client: Any, tmp_path: Path, split: str) -> None:
    """A name the next listing page changes is planned with that page: `x/y` on page 2 is
    dropped as `x` on page 1 is a file, and `m.txt` on page 1 is checked against its
    `m.txt.md5` on page 2 (a wrong one fails it), not fetched alone as page 1 lands."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    keys = {f"k{i:05d}.txt": f"object {i}\n".encode() for i in range(999)}
    last, second = ("x", "x/y") if split == "clash" else ("m.txt", "m.txt.md5")
    keys[last] = b"last of page 1\n"
    keys[second] = b"0" * 32 + b"  m.txt\n"  # a wrong MD5 for m.txt
    for key, data in keys.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    dest = tmp_path / "dest"
    result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest), "--retries", "1")
    assert len(proxy.listings()) == 2
    if split == "clash":
        assert result.returncode == 0, result.stderr
        assert "its directory 'x' is the file 'x'" in result.stderr
        assert_files(dest, {k: v for k, v in keys.items() if k != "x/y"})
    else:
        assert result.returncode == 1, result.stderr
        assert not (dest / "m.txt").exists()
        assert (dest / "k00998.txt").read_bytes() == keys["k00998.txt"]


def test_s3_a_file_under_a_deeper_file_is_dropped(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A key whose directory two levels down is another key (`d/e/f/g` beside the file
    `d/e`) is dropped with a warning naming both; the keys around it land."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    keys = {"d/e": b"a file\n", "d/e/f/g": b"below a file\n", "d/h/i": b"deep\n",
            "m.txt": b"flat\n"}
    for key, data in keys.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data)
    dest = tmp_path / "dest"
    result = run("mirror", f"s3://{name}/data/", "--s3-endpoint", proxy.url, "--dest",
                 str(dest))
    assert result.returncode == 0, result.stderr
    assert "'d/e/f/g': its directory 'd/e' is the file 'd/e'" in result.stderr
    assert_files(dest, {k: v for k, v in keys.items() if k != "d/e/f/g"})


def test_s3_objects_stored_with_a_content_encoding_land_as_stored(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """Objects whose metadata says Content-Encoding (gzip, br) are served as stored, that
    header with them: their bytes are the object (its ETag is their MD5) and land as they
    are, small and large (they failed every attempt: "gzip-encoded, though identity was
    asked for")."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    stored = {"data.json": (b"\x1f\x8b pretend gzip" * 10, "gzip"),
              "page.html": (b"pretend brotli" * 10, "br"),
              "big.json": (os.urandom(300_000), "gzip")}
    for key, (data, coding) in stored.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=data, ContentEncoding=coding)
    dest = tmp_path / "dest"
    result = mirror(proxy, name, dest)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_files(dest, {key: data for key, (data, _) in stored.items()})
    assert {s.status for s in proxy.seen if s.method == "GET" and not s.listing} == {206}


def test_s3_listing_that_comes_back_to_a_token_fails_instead_of_never_ending(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """A server whose listing pages hold no key and say more follow, from the token the
    page was asked with: the listing fails in one line once its retries are spent (it went
    on as long as the server did: 17,566 requests in 30 s), and no file is fetched."""
    proxy.faults.extend(S3Fault("looping", lambda s: s.listing) for _ in range(200))
    result = mirror(proxy, bucket, tmp_path / "d", "--retries", "2")
    assert result.returncode == 1, result.stderr
    assert "goes back to a continuation token it gave before" in result.stderr
    assert len(proxy.listings()) <= 4 and object_gets(proxy, bucket) == []


def test_s3_delete_keeps_a_mirrored_key_a_new_key_now_clashes_with(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """f/g is mirrored; then the key f is added beside it, so f/g cannot land any more (its
    directory would be the file f) and f cannot land over the directory f. With --delete,
    f/g is kept: it is still on the server (it was deleted as "no longer on the server");
    f fails, naming why; a key really gone is still deleted."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for key in ("f/g", "k1", "k2", "k3"):
        client.put_object(Bucket=name, Key=f"data/{key}", Body=f"{key}\n".encode())
    dest = tmp_path / "dest"
    assert mirror(proxy, name, dest).returncode == 0
    client.put_object(Bucket=name, Key="data/f", Body=b"a file now\n")
    client.delete_object(Bucket=name, Key="data/k3")
    result = mirror(proxy, name, dest, "--delete", "--json")
    assert result.returncode == 1, result.stderr
    assert "skipping entry 'f/g'" in result.stderr
    assert [e["name"] for e in events(result.stdout, "file_deleted")] == ["k3"]
    assert [e["name"] for e in events(result.stdout, "file_failed")] == ["f"]
    assert_files(dest, {"f/g": b"f/g\n", "k1": b"k1\n", "k2": b"k2\n"})


def test_s3_max_depth_keeps_to_keys_that_deep(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """`--max-depth N` over an S3 prefix takes the keys at most N `/` below it, as a walk
    would reach them (it took every key); `--delete` with it keeps the deeper files an
    earlier run mirrored."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    keys = {"top.txt": b"top\n", "a/one.txt": b"one\n", "a/b/two.txt": b"two\n"}
    for key, body in keys.items():
        client.put_object(Bucket=name, Key=f"data/{key}", Body=body)
    shallow, whole = tmp_path / "shallow", tmp_path / "whole"
    assert mirror(proxy, name, shallow, "--recursive", "--max-depth", "0").returncode == 0
    assert_files(shallow, {"top.txt": b"top\n"})
    assert mirror(proxy, name, whole).returncode == 0
    assert_files(whole, keys)
    client.delete_object(Bucket=name, Key="data/top.txt")
    again = mirror(proxy, name, whole, "--recursive", "--max-depth", "1", "--delete",
                   "--max-delete", "100%")
    assert again.returncode == 0, again.stderr
    assert_files(whole, {k: v for k, v in keys.items() if k != "top.txt"})


@pytest.mark.parametrize("depth", [["--recursive"], ["--max-depth", "1"], []],
                         ids=["recursive", "max-depth", "flat"])
def test_s3_prefix_is_listed_once_whole_and_folder_markers_are_no_files(
        proxy: S3FaultProxy, client: Any, tmp_path: Path, depth: list[str]) -> None:
    """With or without `--recursive`, an S3 prefix is one listing of every key below it: a
    folder marker (`a/`) is neither a file nor a directory to enter, a sibling key sharing
    its first letters (`abc/y.txt`) keeps its own name, and `--delete` keeps nested files."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for key, body in [("a/", b""), ("a/x.txt", b"in a\n"), ("abc/y.txt", b"in abc\n"),
                      ("top.txt", b"top\n")]:
        client.put_object(Bucket=name, Key=f"data/{key}", Body=body)
    dest = tmp_path / "dest"
    wanted = {"a/x.txt": b"in a\n", "abc/y.txt": b"in abc\n", "top.txt": b"top\n"}
    first = mirror(proxy, name, dest, *depth)
    assert first.returncode == 0, first.stderr
    assert_files(dest, wanted)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_dir()
                  and ".pubmed-mirror" not in p.relative_to(dest).parts) == ["a", "abc"]
    assert sorted(object_gets(proxy, name)) == ["data/a/x.txt", "data/abc/y.txt",
                                                 "data/top.txt"]
    assert [s.query.get("prefix") for s in proxy.listings()] == [["data/"]]
    client.delete_object(Bucket=name, Key="data/top.txt")
    again = mirror(proxy, name, dest, *depth, "--delete", "--max-delete", "100%")
    assert again.returncode == 0, again.stderr
    assert_files(dest, {k: v for k, v in wanted.items() if k != "top.txt"})


def test_s3_failed_object_leaves_no_empty_directories(
        proxy: S3FaultProxy, client: Any, tmp_path: Path) -> None:
    """A nested object whose every GET is refused fails the run and leaves none of the
    directories made for it behind (a directory holding another file stays)."""
    name = f"bucket-{next(_names)}"
    make_bucket(client, name)
    for key in ("deep/er/z.txt", "deep/ok.txt"):
        client.put_object(Bucket=name, Key=f"data/{key}", Body=b"payload\n")
    client.put_object(Bucket=name, Key="data/lone/only/w.txt", Body=b"payload\n")
    refused = ("data/deep/er/z.txt", "data/lone/only/w.txt")
    proxy.faults.extend(S3Fault("deny", lambda s: s.method == "GET" and s.key(name) in refused)
                        for _ in range(40))
    dest = tmp_path / "dest"
    result = mirror(proxy, name, dest, "--retries", "1")
    assert result.returncode == 1, result.stderr
    assert len([s for s in proxy.seen if s.key(name) in refused and s.status == 403]) >= 2
    assert_files(dest, {"deep/ok.txt": b"payload\n"})
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_dir()
                  and ".pubmed-mirror" not in p.relative_to(dest).parts) == ["deep"]


def test_s3_listing_out_of_key_order_fails_before_any_file(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """Files are decided and fetched while the listing goes on, on S3's key order alone (a
    name's directory and its NAME.md5 come before it): a server that lists keys out of
    order fails the run with one line saying so, before a file of that page is fetched."""
    proxy.faults.extend(S3Fault("unsorted", lambda s: s.listing) for _ in range(20))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--retries", "1")
    assert result.returncode == 1, result.stderr
    assert "the listing is not in key order" in result.stderr, result.stderr
    assert len([s for s in proxy.seen if s.listing]) == 2  # asked again once, then failed
    assert not [s for s in proxy.seen if s.method == "GET" and not s.listing]
    assert not [p for p in dest.rglob("*") if p.is_file() and ".pubmed-mirror" not in p.parts]
    proxy.faults.clear()
    assert mirror(proxy, bucket, dest).returncode == 0
    assert_files(dest, FILES)


def test_key_order_passes_over_names_xml_changed() -> None:
    """A listing sent unencoded has each CR of a key turned into a line feed by XML, which
    may put two keys out of order: such names (dropped as unsafe later) are passed over;
    any other step back is refused."""
    from pubmed_mirror._errors import ProtocolError
    from pubmed_mirror._s3list import in_key_order
    from pubmed_mirror._transport import RemoteEntry

    def page(*names: str) -> list[RemoteEntry]:
        return [RemoteEntry(name, 1, 0.0) for name in names]

    assert in_key_order(None, page("a", "a\nc", "a\nb", "b"), "p") == "b"
    assert in_key_order("b", page(), "p") == "b"
    with pytest.raises(ProtocolError, match="not in key order"):
        in_key_order("b", page("c", "b"), "p")
    with pytest.raises(ProtocolError, match="not in key order"):
        in_key_order("b", page("b"), "p")  # a key listed twice


@pytest.mark.parametrize("unencoded", [False, True], ids=["encoded", "unencoded"])
def test_s3_keys_are_url_decoded_only_when_the_listing_says_so(
        proxy: S3FaultProxy, bucket: str, client: Any, tmp_path: Path, unencoded: bool
) -> None:
    """Keys with `+`, `%2F`, spaces and `&` land under their own names whether the server
    URL-encodes the listing (`<EncodingType>url`) or ignores the request and sends them
    as they are."""
    literal = b"a literal percent sequence\n"
    client.put_object(Bucket=bucket, Key="data/pct%2Fname+x.txt", Body=literal)
    if unencoded:
        proxy.faults.append(S3Fault("unencoded", lambda s: s.listing))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 0, result.stderr
    assert_files(dest, {**FILES, "pct%2Fname+x.txt": literal})
    assert not proxy.faults  # the listing was answered unencoded
