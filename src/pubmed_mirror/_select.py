"""Choosing a listing's files by what a metadata object says of them, not by their names:
PMC's licence presets (`_pmc`) keep an article version's files when the version's own JSON
says its licence is one of theirs.

A rule puts each listed name in a group (an article version's directory) and names the
group's metadata object, itself one of the group's files. In a sorted listing (S3's) a
group's names are contiguous, so a group is whole once a later one begins: every group of a
page but its last, which waits in the listing (`Listing.held`) for the next page. A whole
group is decided by what its metadata object said, as the manifest remembers it at the
ETag listed now (`Manifest.facts`), else read with a GET (on the session that lists and on
the pool's spare ones at once; each read retried on its own) and remembered. A group
without a metadata object, or whose object cannot be read (retries spent, not what the rule
reads, changed since it was listed), becomes an "unlisted" entry: reported as a failure
(`reasons` says why) and its local files kept from --delete, never dropped in silence.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._errors import RemoteFileError, TransientError, describe, ungrouped
from ._transport import RemoteEntry
from ._whole import IN_MEMORY

if TYPE_CHECKING:
    from ._retry import RetryPolicy
    from ._state import Manifest

__all__ = ["Rule", "Selector", "other_etag", "same_etag"]

log = logging.getLogger("pubmed_mirror")

DOCUMENT_LIMIT = 1 << 20  # a metadata object larger than this is not one
# chosen groups' metadata objects kept to be mirrored without a second GET: PMC's JSONs are
# a few KiB, so about a thousand, several pages' worth (the files of a sorted listing's
# page are fetched while the next pages are listed; a fetch further behind reads the
# later ones again)
_KEPT_BYTES = 8 << 20


class Rule(Protocol):
    """What a selection by metadata needs to know of a dataset's layout."""

    def group(self, name: str) -> str | None:
        """The group a listed name belongs to; None for a name in none (not selected)."""
        ...

    def index(self, group: str) -> str:
        """The name of the group's metadata object."""
        ...

    def facts(self, group: str, document: bytes) -> str:
        """What the group's metadata object says that the rule decides by, as a short
        string (kept in the manifest); ValueError when it cannot be read."""
        ...

    def chosen(self, facts: str) -> bool:
        """Whether the group is selected, by its facts; ValueError when the rule cannot
        read them."""
        ...


class Reader(Protocol):
    """A session that can read a small object whole (`S3Session.document`)."""

    async def document(self, name: str, limit: int) -> tuple[bytes, str | None]:
        ...


Borrow = Callable[[], AbstractAsyncContextManager[Any]]  # `SessionPool.spare`: a Reader


def same_etag(one: str, other: str) -> bool:
    """The same ETag, quoted or not (a listing and an answer may write it either way)."""
    return one.strip('"') == other.strip('"')


def other_etag(one: str | None, other: str | None) -> bool:
    """Two ETags, both known, that name different versions (`same_etag`'s rule)."""
    return one is not None and other is not None and not same_etag(one, other)


@dataclass(slots=True)
class _Group:
    name: str
    index: str  # its metadata object's name
    entries: list[RemoteEntry]
    etag: str | None = None  # its metadata object's, as listed; None: not listed


_Row = tuple[str, str, str]  # the manifest's: a metadata object's name, ETag and facts


class Selector:
    """A rule applied to a listing page by page (`choose`), with the manifest remembering
    what each metadata object said (without one, every object is read), and up to `lanes`
    reads at once (the listing's session, and spare ones `borrow` gives), each retried by
    `retry`. `reasons`: why each group that failed was not mirrored."""

    def __init__(self, rule: Rule, manifest: Manifest | None, borrow: Borrow | None,
                 lanes: int, retry: RetryPolicy) -> None:
        self.rule = rule
        self.manifest = manifest
        self.borrow = borrow
        self.lanes = max(1, lanes)
        self.retry = retry
        # what was read goes into the manifest, and the chosen groups' bodies are kept to
        # be mirrored (not in a dry run, nor in `ls`)
        self.keep = True
        self.reasons: dict[str, str] = {}
        # chosen groups' metadata objects as read to decide them, by name: a run mirrors
        # them without asking again (`take`); none kept beyond _KEPT_BYTES
        self._bodies: dict[str, tuple[str, bytes]] = {}
        self._kept_bytes = 0

    async def choose(self, held: Sequence[RemoteEntry], page: Sequence[RemoteEntry],
                     last: bool, session: Reader) -> tuple[list[RemoteEntry],
                                                           list[RemoteEntry]]:
        """The entries of `held` and `page` to keep (the groups chosen, an "unlisted" entry
        for each that cannot be decided), and those to hold for the next page; nothing is
        changed until the caller keeps both."""
        groups = self._groups([*held, *page])
        wait = [] if last or not groups else groups.pop().entries
        remembered = await self._remembered([g.index for g in groups if g.etag])
        # each group's verdict, by what the manifest remembers (an ETag "" names nothing)
        chosen = {g.name: verdict for g in groups
                  if g.etag and (row := remembered.get(g.index)) is not None
                  and same_etag(row[1], g.etag) and (verdict := self._verdict(row[2])) is not None}
        read = await self._read([g for g in groups if g.name not in chosen and g.etag],
                                session)
        learned = {name: row for name, (row, _) in read.items()}
        if self.manifest is not None and self.keep and learned:
            await anyio.to_thread.run_sync(self.manifest.keep_facts, list(learned.values()))
        chosen.update({name: self.rule.chosen(row[2]) for name, row in learned.items()})
        if self.keep:
            for name, (row, body) in read.items():
                if chosen[name]:
                    self._keep_body(row[0], row[1], body)
        kept: list[RemoteEntry] = []
        for group in groups:
            if group.name in chosen:
                if chosen[group.name]:
                    kept.extend(group.entries)
                continue
            if group.etag is None:
                self._failed(group, f"it has no {group.index} to say whether it is selected")
            kept.append(RemoteEntry(group.name, None, None, "unlisted"))
        return kept, wait

    def _keep_body(self, name: str, etag: str, body: bytes) -> None:
        if len(body) >= IN_MEMORY:  # fetched as a larger file is, never from memory
            return
        if (before := self._bodies.pop(name, None)) is not None:
            self._kept_bytes -= len(before[1])
        if self._kept_bytes + len(body) > _KEPT_BYTES:  # the fetch is behind: the oldest
            return  # are the next it asks for, so they stay and this one is read again
        self._bodies[name] = (etag, body)
        self._kept_bytes += len(body)

    def take(self, name: str, etag: str | None) -> bytes | None:
        """The bytes of metadata object `name` as read to decide its group, once, when they
        are of the version `etag` (the listing's) names; None otherwise."""
        kept = self._bodies.pop(name, None)
        if kept is None:
            return None
        self._kept_bytes -= len(kept[1])
        return kept[1] if etag and kept[0] and same_etag(kept[0], etag) else None

    def _verdict(self, facts: str) -> bool | None:
        """Whether remembered facts select their group; None when the rule cannot read them
        (another rule's or another time's format: read again from the object)."""
        try:
            return self.rule.chosen(facts)
        except ValueError:
            return None

    async def _remembered(self, names: list[str]) -> dict[str, _Row]:
        if self.manifest is None or not names:
            return {}
        facts = await anyio.to_thread.run_sync(self.manifest.facts, names)
        return {name: (name, etag, said) for name, (etag, said) in facts.items()}

    def _groups(self, entries: Sequence[RemoteEntry]) -> list[_Group]:
        groups: dict[str, _Group] = {}
        for entry in entries:
            name = self.rule.group(entry.name)
            if name is None:
                log.info("%s: in no group the selection reads: not selected", entry.name)
                continue
            group = groups.get(name)
            if group is None:
                group = groups[name] = _Group(name, self.rule.index(name), [])
            group.entries.append(entry)
            if entry.name == group.index:
                group.etag = entry.validator or ""
        return list(groups.values())

    async def _read(self, groups: list[_Group], session: Reader
                    ) -> dict[str, tuple[_Row, bytes]]:
        """Each group's metadata object read, on `session` and spare ones at once: the
        manifest's rows of those that could be, with the bytes read, by group."""
        todo = deque(groups)
        learned: dict[str, tuple[_Row, bytes]] = {}
        reading = 0  # reads under way (a spare lane may still be opening its session)
        done = anyio.Event()

        async def drain(reader: Reader) -> None:
            nonlocal reading
            while todo:
                group = todo.popleft()
                reading += 1
                try:
                    row = await self._document(reader, group)
                finally:
                    reading -= 1
                if row is not None:
                    learned[group.name] = row
                if not todo and not reading:
                    done.set()

        async def spare() -> None:
            assert self.borrow is not None
            async with self.borrow() as reader:
                if reader is not None:
                    await drain(reader)

        if not todo:
            return learned
        with ungrouped():
            async with anyio.create_task_group() as tg:
                for _ in range(min(self.lanes, len(todo)) - 1 if self.borrow else 0):
                    tg.start_soon(spare)
                await drain(session)
                await done.wait()  # the spare lanes' last reads; those still opening go
                tg.cancel_scope.cancel()
        return learned

    async def _document(self, reader: Reader, group: _Group) -> tuple[_Row, bytes] | None:
        """The manifest's row for the group's metadata object, read now (retried), and the
        bytes read; None, the reason kept, when it cannot be."""
        try:
            body, etag = await self.retry.call(
                lambda: reader.document(group.index, DOCUMENT_LIMIT))
        except (TransientError, RemoteFileError) as exc:
            self._failed(group, f"cannot read {group.index}: {describe(exc)}")
            return None
        if etag and group.etag and not same_etag(etag, group.etag):
            self._failed(group, f"{group.index} changed on the server since it was listed "
                                f"(ETag {etag}, listed {group.etag}): the next run reads it")
            return None
        try:
            facts = self.rule.facts(group.name, body)
        except ValueError as exc:
            self._failed(group, f"cannot read {group.index}: {describe(exc)}")
            return None
        return (group.index, group.etag or etag or "", facts), body  # (ETag as listed)

    def _failed(self, group: _Group, reason: str) -> None:
        self.reasons[group.name] = f"not mirrored: {reason}"
        log.warning("%s: not mirrored: %s", group.name, reason)
