"""S3 objects whose ETag is not an MD5 (multipart uploads): their own `x-amz-checksum-*`
asked for and checked before the rename, recorded, and what `verify` then says; the
installed command against moto's S3 server, faults injected by the proxy in front of it."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from s3server import S3Fault, S3FaultProxy, make_bucket, moto_server, put_multipart, s3_client
from test_s3 import assert_files, run

_names = itertools.count()
PARTS = {name: [os.urandom(5 << 20), os.urandom(200_000)]
         for name in ("full.bin", "composite.bin", "plain.bin")}
SINGLE = {"sha256.xml": b"<a>sha256</a>\n" * 50, "sha1.xml": b"<a>sha1</a>\n" * 40}
FILES = {**{k: b"".join(v) for k, v in PARTS.items()}, **SINGLE}
FULL_CRC32 = base64.b64encode(zlib.crc32(FILES["full.bin"]).to_bytes(4, "big")).decode()


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def bucket(moto: str) -> str:
    """A public bucket under data/: full.bin in parts with a full-object CRC32,
    composite.bin in parts with a composite SHA256, plain.bin in parts without a checksum,
    and two single-part objects uploaded with a SHA256 and a SHA1."""
    client: Any = s3_client(moto)
    name = f"sums-{next(_names)}"
    make_bucket(client, name)
    put_multipart(client, name, "data/full.bin", PARTS["full.bin"], algorithm="CRC32",
                  kind="FULL_OBJECT")
    put_multipart(client, name, "data/composite.bin", PARTS["composite.bin"],
                  algorithm="SHA256")
    put_multipart(client, name, "data/plain.bin", PARTS["plain.bin"])
    for key, algorithm in (("sha256.xml", "SHA256"), ("sha1.xml", "SHA1")):
        client.put_object(Bucket=name, Key=f"data/{key}", Body=SINGLE[key],
                          ChecksumAlgorithm=algorithm)
    return name


@pytest.fixture
def proxy(moto: str) -> Iterator[S3FaultProxy]:
    with S3FaultProxy(moto).running() as server:
        yield server


def mirror(proxy: S3FaultProxy, bucket: str, dest: Path, *args: str) -> Any:
    return run("mirror", f"s3://{bucket}/data/", "--s3-endpoint", proxy.url, "--dest",
               str(dest), "--retries", "3", *args)


def rows(dest: Path) -> dict[str, tuple[Any, ...]]:
    with closing(sqlite3.connect(dest / ".pubmed-mirror" / "manifest.sqlite")) as db:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT name, md5, checksum, verified_at FROM files").fetchall()}


def test_s3_checksums_asked_once_checked_recorded_and_verified(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """Each multipart object is asked for its checksum by one HEAD with checksum mode, a
    full-object one is recorded as checked, a composite one recorded as such, and `verify`
    re-hashes the CRC32 and says that the others had only their size checked."""
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 0, result.stderr
    assert_files(dest, FILES)
    heads = proxy.heads(bucket)
    assert sorted(s.key(bucket) or "" for s in heads) == [
        "data/composite.bin", "data/full.bin", "data/plain.bin"]
    assert all(s.headers.get("x-amz-checksum-mode") == "ENABLED" for s in heads)
    got = rows(dest)
    assert got["full.bin"][:2] == (None, f"crc32:{FULL_CRC32}") and got["full.bin"][2]
    assert got["composite.bin"][1].startswith("sha256-composite:")
    assert got["composite.bin"][2] is None  # not claimed verified
    assert got["plain.bin"] == (None, None, None)
    assert got["sha256.xml"][0] == hashlib.md5(SINGLE["sha256.xml"]).hexdigest()
    checked = run("verify", str(dest), "-v")
    assert checked.returncode == 0, checked.stderr
    lines = {line.split()[1].rstrip(":"): line for line in checked.stdout.splitlines()
             if line.split()[:1] in (["ok"], ["unchecked"])}
    assert lines["full.bin"].startswith("ok")
    assert "only its size checked" in lines["composite.bin"]
    assert "composite" in lines["composite.bin"]
    assert "only its size checked: no MD5 or checksum known" in lines["plain.bin"]
    assert "3 match their MD5 or checksum" in checked.stdout
    assert "2 without one (size only)" in checked.stdout


def test_s3_verify_finds_a_full_object_checksum_file_corrupted_on_disk(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """A file checked by its recorded CRC32 whose local bytes change is corrupt to `verify`."""
    dest = tmp_path / "dest"
    assert mirror(proxy, bucket, dest).returncode == 0
    data = bytearray(FILES["full.bin"])
    data[1000] ^= 0xFF
    (dest / "full.bin").write_bytes(bytes(data))
    checked = run("verify", str(dest))
    assert checked.returncode == 1
    assert "full.bin" in checked.stdout and "CRC32" in checked.stdout


def test_s3_corrupt_object_with_checksum_is_refetched(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """A multipart object whose bytes do not match its full-object CRC32 is fetched again."""
    proxy.faults.append(S3Fault("corrupt", lambda s: s.key(bucket) == "data/full.bin"
                                and s.method == "GET", after=3 << 20))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 0, result.stderr
    assert [s.headers.get("range") for s in proxy.gets(bucket, "data/full.bin")] == [
        "bytes=0-", "bytes=0-"]
    assert_files(dest, FILES)


def test_s3_always_corrupt_object_with_checksum_fails_cleanly(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """A multipart object corrupt at every attempt fails (exit 1, its CRC32 named) and
    leaves no final file."""
    for _ in range(4):
        proxy.faults.append(S3Fault("corrupt", lambda s: s.key(bucket) == "data/full.bin"
                                    and s.method == "GET", after=3 << 20))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert result.returncode == 1
    assert "CRC32" in result.stdout + result.stderr
    assert len(proxy.gets(bucket, "data/full.bin")) == 4
    assert not (dest / "full.bin").exists()
    assert_files(dest, {k: v for k, v in FILES.items() if k != "full.bin"})


@pytest.mark.parametrize("mover", [[], ["--no-splice"]], ids=["splice", "recv"])
def test_s3_resumed_object_is_checked_whole(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path, mover: list[str]) -> None:
    """A multipart object cut short, then resumed with an answer corrupt beyond the resume
    point, fails its CRC32 over the whole file and is fetched again from 0."""
    key = "data/full.bin"
    proxy.faults.append(S3Fault("cut", lambda s: s.key(bucket) == key and s.method == "GET",
                                after=2 << 20))
    proxy.faults.append(S3Fault("corrupt", lambda s: s.key(bucket) == key
                                and s.method == "GET", after=1 << 20))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, *mover)
    assert result.returncode == 0, result.stderr
    ranges = [s.headers.get("range") for s in proxy.gets(bucket, key)]
    assert len(ranges) == 3 and ranges[0] == ranges[2] == "bytes=0-"
    assert ranges[1] is not None and int(ranges[1][6:-1]) >= 1 << 20
    assert "CRC32" in result.stdout + result.stderr
    assert_files(dest, FILES)


def test_s3_object_replaced_during_a_retry_is_checked_by_its_new_version(
        moto: str, proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """plain.bin (in parts, no checksum: nothing to check it by) is cut short; before the
    retry's HEAD it is replaced by a single-part object of the same size, whose first GET
    comes corrupt. The new version is checked by its own ETag's MD5: the corrupt copy is
    fetched again and the file lands right (it landed corrupt, recorded, exit 0)."""
    key, client = "data/plain.bin", s3_client(moto)
    new = os.urandom(len(FILES["plain.bin"]))
    cut = S3Fault("cut", lambda s: s.key(bucket) == key and s.method == "GET", after=1 << 20)

    def replaced(seen: Any) -> bool:  # the HEAD after the cut: the object is replaced
        if seen.method != "HEAD" or seen.key(bucket) != key or cut in proxy.faults:
            return False
        client.put_object(Bucket=bucket, Key=key, Body=new)
        return True

    proxy.faults.extend([cut, S3Fault("delay", replaced, seconds=0),
                         S3Fault("corrupt", lambda s: s.key(bucket) == key
                                 and s.method == "GET", after=3 << 20)])
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--no-split")
    assert not proxy.faults  # each fault was met
    assert result.returncode == 0, result.stdout + result.stderr
    assert "changed on the server since the listing" in result.stderr
    assert (dest / "plain.bin").read_bytes() == new
    assert rows(dest)["plain.bin"][0] == hashlib.md5(new).hexdigest(), result.stdout + result.stderr
    assert len(proxy.gets(bucket, key)) == 3


def test_s3_object_replaced_before_its_first_get_lands_as_its_new_version(
        moto: str, proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """sha1.xml is replaced (another body, as long) after the listing, before its GET: the
    download does not match the listed ETag's MD5; one HEAD then says the object changed,
    and its new version is fetched and checked by its own ETag (it failed every attempt)."""
    key, client = "data/sha1.xml", s3_client(moto)
    new = bytes(reversed(SINGLE["sha1.xml"]))

    def replaced(seen: Any) -> bool:
        if seen.method != "GET" or seen.key(bucket) != key:
            return False
        client.put_object(Bucket=bucket, Key=key, Body=new)
        return True

    proxy.faults.append(S3Fault("delay", replaced, seconds=0))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest)
    assert not proxy.faults
    assert result.returncode == 0, result.stdout + result.stderr
    assert (dest / "sha1.xml").read_bytes() == new
    assert rows(dest)["sha1.xml"][0] == hashlib.md5(new).hexdigest()
    assert len(proxy.gets(bucket, key)) == 2
    assert mirror(proxy, bucket, dest).returncode == 0
    assert len(proxy.gets(bucket, key)) == 2  # the second run: nothing more to fetch


def _replaced_at(client: Any, bucket: str, key: str, method: str, new: bytes) -> S3Fault:
    """A fault that replaces `key` by `new` as the first `method` request for it arrives
    (that request then sees the new version)."""
    def replaced(seen: Any) -> bool:
        if seen.method != method or seen.key(bucket) != key:
            return False
        client.put_object(Bucket=bucket, Key=key, Body=new)
        return True

    return S3Fault("delay", replaced, seconds=0)


def _etags(dest: Path) -> dict[str, Any]:
    with closing(sqlite3.connect(dest / ".pubmed-mirror" / "manifest.sqlite")) as db:
        return dict(db.execute("SELECT name, etag FROM files").fetchall())


def test_s3_multipart_object_replaced_before_its_checksum_head_lands_checked(
        moto: str, proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """plain.bin (in parts, no checksum) replaced by a longer single-part object as its
    checksum HEAD arrives: the HEAD names another ETag than the listing's, the object is
    asked what it is now, and its new version lands checked by its ETag's MD5 and recorded
    with that ETag (it failed every attempt)."""
    key, client = "data/plain.bin", s3_client(moto)
    new = os.urandom(len(FILES["plain.bin"]) + 7)
    proxy.faults.append(_replaced_at(client, bucket, key, "HEAD", new))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--no-split")
    assert not proxy.faults
    assert result.returncode == 0, result.stdout + result.stderr
    assert (dest / "plain.bin").read_bytes() == new
    assert rows(dest)["plain.bin"][0] == hashlib.md5(new).hexdigest()
    assert _etags(dest)["plain.bin"] == client.head_object(Bucket=bucket, Key=key)["ETag"]


def test_s3_multipart_object_replaced_before_its_get_is_checked_by_the_next_run(
        moto: str, proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """plain.bin (in parts, no checksum: nothing checks it) replaced by a single-part object
    as long as its first GET arrives: what is served lands, unchecked as the listed object
    would have, and recorded as the listed version, so the next run, listing the new ETag,
    fetches it again and checks it by that ETag's MD5. (A GET's ETag is not compared with
    the listing's: some S3-compatible servers answer other ETags than they list.)"""
    key, client = "data/plain.bin", s3_client(moto)
    new = os.urandom(len(FILES["plain.bin"]))
    listed = client.head_object(Bucket=bucket, Key=key)["ETag"]
    proxy.faults.append(_replaced_at(client, bucket, key, "GET", new))
    dest = tmp_path / "dest"
    assert mirror(proxy, bucket, dest, "--no-split").returncode == 0
    assert (dest / "plain.bin").read_bytes() == new
    assert rows(dest)["plain.bin"][0] is None and _etags(dest)["plain.bin"] == listed
    again = mirror(proxy, bucket, dest, "--no-split")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(proxy.gets(bucket, key)) == 2
    assert rows(dest)["plain.bin"][0] == hashlib.md5(new).hexdigest()


def test_s3_object_replaced_by_another_size_lands_without_verification_too(
        moto: str, proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """--no-verify: sha1.xml replaced by a longer body as its GET arrives lands as its new
    version, recorded with its ETag (every attempt asked for the listed size and failed)."""
    key, client = "data/sha1.xml", s3_client(moto)
    new = SINGLE["sha1.xml"] + b"more\n"
    proxy.faults.append(_replaced_at(client, bucket, key, "GET", new))
    dest = tmp_path / "dest"
    result = mirror(proxy, bucket, dest, "--no-verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (dest / "sha1.xml").read_bytes() == new
    assert _etags(dest)["sha1.xml"] == client.head_object(Bucket=bucket, Key=key)["ETag"]


def test_s3_an_object_checked_by_its_checksum_is_verified_for_the_dataset(
        proxy: S3FaultProxy, bucket: str, tmp_path: Path) -> None:
    """An object checked by its full-object checksum as it landed (full.bin, CRC32) is
    verified for `status`, as one checked by its MD5 is; one whose checksum could not be
    checked (plain.bin, composite.bin) is not. Before, only an MD5 counted (and
    `load-order`, which reads the same verdict, stopped at such a PubMed-named file for
    good)."""
    dest = tmp_path / "dest"
    assert mirror(proxy, bucket, dest).returncode == 0
    status = json.loads(run("status", str(dest), "--json").stdout.splitlines()[0])
    assert status["unverified"] == 2  # plain.bin and composite.bin: size only
    assert status["verified"] == 3  # full.bin by its CRC32, the single-part ones by MD5
