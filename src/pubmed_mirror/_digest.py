"""Digests of local files: whole (`file_md5`, `file_checksum`), or of a part while it is
received (`PartDigest`); and `Checksum`, a digest a server gave for a whole object (S3's
`x-amz-checksum-*`), in the form it gave it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ._layout import open_read

__all__ = ["Checksum", "PartDigest", "bytes_digest", "file_checksum", "file_md5"]

_HASH_BLOCK = 4 << 20


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...
    def digest(self) -> bytes: ...


class _Crc32:
    """zlib's CRC-32 (S3's CRC32) as a hash object: the digest is the big-endian value."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def _new_hash(algorithm: str) -> _Hash:
    if algorithm == "crc32":
        return _Crc32()
    return hashlib.new(algorithm, usedforsecurity=False)


# what the standard library computes; S3's CRC32C and CRC64NVME are not among them (no
# small, well-kept library does both: awscrt, AWS's native runtime, is the only one)
COMPUTABLE = frozenset({"md5", "sha1", "sha256", "crc32"})


_COMPOSITE = "-composite"


@dataclass(frozen=True, slots=True)
class Checksum:
    """A checksum the server gave for an object: `algorithm` lowercased as S3 names it
    (sha256, sha1, crc32, crc32c, crc64nvme), `value` as given (base64 of the big-endian
    digest). A `composite` one (a multipart upload's checksum of its parts' checksums; AWS
    ends its value with `-N`) says nothing a digest of the whole file can be compared with."""

    algorithm: str
    value: str
    composite: bool = False

    def __str__(self) -> str:  # as the manifest records it
        return f"{self.algorithm}{_COMPOSITE if self.composite else ''}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Checksum:
        algorithm, colon, value = text.partition(":")
        if not colon or not algorithm or not value:
            raise ValueError(f"not a checksum: {text!r}")
        bare = algorithm.lower().removesuffix(_COMPOSITE)
        return cls(bare, value, composite=bare != algorithm.lower())

    @property
    def checkable(self) -> bool:
        """Whether a digest of the whole file can be compared with it here."""
        return not self.composite and self.algorithm in COMPUTABLE

    def why_unchecked(self) -> str:
        if self.composite:
            return (f"its {self.algorithm} checksum is composite (of its parts' checksums), "
                    "not of the whole file")
        return f"its {self.algorithm} checksum cannot be computed here"

    def encode(self, digest: bytes) -> str:
        """A digest of the file, in this checksum's form."""
        return base64.b64encode(digest).decode("ascii")


def bytes_digest(data: bytes, algorithm: str) -> bytes:
    """The digest of `data` by `algorithm` (one of COMPUTABLE)."""
    digest = _new_hash(algorithm)
    digest.update(data)
    return digest.digest()


def file_md5(path: Path) -> str:
    return file_checksum(path, "md5").hex()


def file_checksum(path: Path, algorithm: str) -> bytes:
    """The digest of a whole file by `algorithm` (one of COMPUTABLE)."""
    digest = _new_hash(algorithm)
    with open_read(path) as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
    return digest.digest()


class PartDigest:
    """The digest of NAME.part (MD5 unless `algorithm` says), computed behind the writer.

    While the part is received, a worker thread hashes what is already written (read back
    from the page cache), so the check before the rename reads only the rest: on a fast link
    the hashing overlaps the transfer instead of following it. One belongs to one attempt,
    made after the part was prepared: within an attempt the part only grows (its first span
    appends, then the segments are appended), and a new attempt, which may start the part
    again, makes a new one.
    """

    def __init__(self, part: Path, algorithm: str = "md5") -> None:
        self._part = part
        self.algorithm = algorithm
        self._hash = _new_hash(algorithm)
        self._done = 0  # bytes of the part hashed
        self._lock = threading.Lock()  # one thread hashes at a time
        self._busy = False  # a job is queued or running

    def advance(self, written: int) -> None:
        """The part holds `written` bytes: hash them in a worker thread, unless the last job
        still runs (the next call catches up). Called on the event loop; never waits."""
        if not self._busy and written > self._done:
            self._busy = True
            asyncio.get_running_loop().run_in_executor(None, self._job, written)

    def _job(self, upto: int) -> None:
        try:
            with self._lock:
                self._update(upto)
        except OSError:
            pass  # `hexdigest` reads on from where this stopped, and reports what is wrong
        finally:
            self._busy = False

    def _update(self, upto: int | None) -> None:
        with open_read(self._part) as f:
            f.seek(self._done)
            while upto is None or self._done < upto:
                want = _HASH_BLOCK if upto is None else min(_HASH_BLOCK, upto - self._done)
                block = f.read(want)
                if not block:
                    break
                self._hash.update(block)
                self._done += len(block)

    def digest(self) -> bytes:
        """The digest of the whole part as it is now (blocking: call it in a worker thread)."""
        with self._lock:
            self._update(None)
            return self._hash.digest()

    def hexdigest(self) -> str:
        return self.digest().hex()
