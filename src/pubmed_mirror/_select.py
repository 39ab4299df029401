"""Choosing a listing's files by what a metadata object says of them, not by their names:
PMC's licence presets (`_pmc`) keep an article version's files when the version's own JSON
says its licence is one of theirs.

A rule puts each listed name in a group (an article version's directory) and names the
group's metadata object, itself one of the group's files. In a sorted listing (S3's) a
group's names are contiguous, so a group is whole once a later one begins: every group of a
page but its last, which waits in the listing (`Listing.held`) for the next page. A whole
group is decided by what its metadata object said, as the manifest remembers it at the
ETag listed now (`Manifest.facts`), else read with a GET (on the session that lists and on
the pool's spare ones at once) and remembered. A group without a metadata object, or whose
object cannot be read, becomes an "unlisted" entry: reported as a failure and its local
files kept from --delete, never dropped in silence. A transient error reading one is
raised: the listing asks that page again (nothing of it was kept).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ._errors import RemoteFileError, describe, ungrouped
from ._transport import RemoteEntry

if TYPE_CHECKING:
    from ._state import Manifest

__all__ = ["Rule", "Selector"]

log = logging.getLogger("pubmed_mirror")

DOCUMENT_LIMIT = 1 << 20  # a metadata object larger than this is not one


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
        ...


class Reader(Protocol):
    """A session that can read a small object whole (`S3Session.document`)."""

    async def document(self, name: str, limit: int) -> tuple[bytes, str | None]:
        ...


Borrow = Callable[[], AbstractAsyncContextManager[Any]]  # `SessionPool.spare`


@dataclass(frozen=True, slots=True)
class _Group:
    name: str
    entries: list[RemoteEntry]
    etag: str | None  # its metadata object's, as listed; None: not listed
    index: str


class Selector:
    """A rule applied to a listing page by page (`choose`), with the manifest remembering
    what each metadata object said (without one, every object is read), and up to `lanes`
    reads at once (the listing's session, and spare ones `borrow` gives)."""

    def __init__(self, rule: Rule, manifest: Manifest | None, borrow: Borrow | None,
                 lanes: int) -> None:
        self.rule = rule
        self.manifest = manifest
        self.borrow = borrow
        self.lanes = max(1, lanes)
        self.read = 0  # metadata objects read over the network, this run
        self.outside = 0  # listed names in no group

    async def choose(self, held: Sequence[RemoteEntry], page: Sequence[RemoteEntry],
                     last: bool, session: Reader) -> tuple[list[RemoteEntry],
                                                           list[RemoteEntry]]:
        """The entries of `held` and `page` to keep (the groups chosen, an "unlisted" entry
        for each that cannot be decided), and those to hold for the next page; nothing is
        changed until the caller keeps both."""
        groups = self._groups([*held, *page])
        wait = [] if last or not groups else groups.pop().entries
        facts = await self._remembered([g.index for g in groups if g.etag])
        known = {g.name: facts[g.index][1] for g in groups  # (an ETag "" names nothing)
                 if g.etag and g.index in facts and facts[g.index][0] == g.etag}
        unread = [g for g in groups if g.name not in known and g.etag is not None]
        learned = await self._read(unread, session)
        if self.manifest is not None and learned:
            await anyio.to_thread.run_sync(self.manifest.keep_facts, list(learned.values()))
        known.update({name: row[2] for name, row in learned.items()})
        kept: list[RemoteEntry] = []
        for group in groups:
            if group.name in known:
                if self.rule.chosen(known[group.name]):
                    kept.extend(group.entries)
            else:
                kept.append(RemoteEntry(group.name, None, None, "unlisted"))
                if group.etag is None:
                    log.warning("%s: not mirrored: it has no %s to say whether it is "
                                "selected", group.name, group.index)
        return kept, wait

    async def _remembered(self, names: list[str]) -> dict[str, tuple[str, str]]:
        if self.manifest is None or not names:
            return {}
        return await anyio.to_thread.run_sync(self.manifest.facts, names)

    def _groups(self, entries: Sequence[RemoteEntry]) -> list[_Group]:
        groups: dict[str, _Group] = {}
        for entry in entries:
            name = self.rule.group(entry.name)
            if name is None:
                self.outside += 1
                continue
            group = groups.get(name)
            if group is None:
                group = groups[name] = _Group(name, [], None, self.rule.index(name))
            group.entries.append(entry)
            if entry.name == group.index:
                groups[name] = _Group(name, group.entries, entry.validator or "", group.index)
        return list(groups.values())

    async def _read(self, groups: list[_Group], session: Reader
                    ) -> dict[str, tuple[str, str, str]]:
        """Each group's metadata object read (on `session` and spare ones, at once): the
        manifest's rows of those that could be, by group."""
        todo = deque(groups)
        learned: dict[str, tuple[str, str, str]] = {}
        busy = 0
        idle = anyio.Event()

        async def drain(reader: Reader) -> None:
            nonlocal busy, idle
            while todo:
                group = todo.popleft()
                busy += 1
                try:
                    row = await self._document(reader, group)
                finally:
                    busy -= 1
                if row is not None:
                    learned[group.name] = row
                if not busy:
                    idle.set()
                    idle = anyio.Event()

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
                while busy:  # the spare lanes' last reads; then those still waiting go
                    await idle.wait()
                tg.cancel_scope.cancel()
        return learned

    async def _document(self, reader: Reader, group: _Group) -> tuple[str, str, str] | None:
        """The manifest's row for the group's metadata object, read now; None (said) when it
        cannot be read. A transient error is raised."""
        try:
            body, etag = await reader.document(group.index, DOCUMENT_LIMIT)
            facts = self.rule.facts(group.name, body)
        except (RemoteFileError, ValueError) as exc:
            log.warning("%s: not mirrored: cannot read %s (%s)", group.name, group.index,
                        describe(exc))
            return None
        self.read += 1
        return group.index, etag or group.etag or "", facts

