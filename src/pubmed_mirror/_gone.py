"""`--delete` over a web server: a recorded file its index pages no longer show goes only
once the server says it is gone.

An autoindex page leaves out what the server will not serve: Apache omits a directory or
file it may not read, which is then still on the server, refused (403), not gone. So each
recorded file the listing no longer shows is asked for (HEAD) before it is deleted, and
goes only when the server answers 404 or 410 for the file itself, or redirects it to
NAME/ (the file became a directory). Its directories are asked first, from the top, once
each, only to keep: one that answers neither a success nor 404/410 keeps every file below
it without asking for each. Once the server fails to answer at all (a timeout, a 503
after the retries), the files not asked yet are kept, unasked. FTP listings and S3's show
what is there, readable or not: nothing of theirs is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import anyio

from ._errors import FatalError, MirrorError, RemoteFileError, describe, ungrouped
from ._http import HttpSession
from ._httperrors import Redirected
from ._pool import SessionPool
from ._retry import RetryPolicy
from ._source import HttpSource
from ._tree import SEPARATOR

__all__ = ["confirm_gone"]

log = logging.getLogger("pubmed_mirror")

_GONE = ("404", "410")
_THERE, _MISSING = "there", "gone"


class _Unanswered(Exception):
    """The server did not answer (its retries spent): nothing more is asked."""


async def confirm_gone(pool: SessionPool, source: HttpSource, names: Sequence[str],
                       retry: RetryPolicy, lanes: int = 1) -> list[str]:
    """The names of `names` (recorded, not listed) that the server says are gone, asked
    `lanes` at a time; each other one is warned about, naming the answer, and kept."""
    log.info("asking the server about %d files before deleting them", len(names))
    folders: dict[str, str] = {}  # a directory's answer: _THERE, _MISSING or why kept
    asking: dict[str, anyio.Event] = {}  # a directory being asked (by another lane)
    said: dict[str, str] = {}  # each name's answer
    silent: str | None = None  # why the server is no longer asked

    async def answer(path: str, *, folder: bool) -> str:
        async def head() -> bool:
            async with pool.session() as session:
                assert isinstance(session, HttpSession)
                if folder:
                    await session.stat(source.remote_path(path) + SEPARATOR,
                                       kind_check=False)
                    return False
                return await session.is_directory(source.remote_path(path))

        try:
            directory_now = await retry.call(head)
        except Redirected:
            return _THERE  # something answers there
        except RemoteFileError as exc:  # an answer: 404 and 410 say gone, others not
            return _MISSING if (exc.reply or "")[:3] in _GONE else describe(exc)
        except FatalError:
            raise
        except MirrorError as exc:
            raise _Unanswered(describe(exc)) from exc
        return _MISSING if directory_now else _THERE  # (the file became a directory)

    async def folder_answer(folder: str) -> str:
        """A directory's answer, asked once whichever lane needs it first."""
        if folder in asking:
            await asking[folder].wait()
        else:
            asking[folder] = done = anyio.Event()
            try:
                folders[folder] = await answer(folder, folder=True)
            finally:
                done.set()
        return folders.get(folder) or silent or "the server did not answer"

    async def verdict(name: str) -> str:
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            got = await folder_answer(SEPARATOR.join(parts[:depth]))
            if got not in (_THERE, _MISSING):  # refused: it keeps what it holds
                return got
        return await answer(name, folder=False)

    async def lane(todo: Iterator[str]) -> None:
        nonlocal silent
        for name in todo:  # (shared by the lanes: each name is taken by one)
            if silent is None:
                try:
                    said[name] = await verdict(name)
                    continue
                except _Unanswered as exc:
                    silent = silent or f"the server did not answer: {exc}"
            said[name] = silent

    todo = iter(names)
    with ungrouped():  # (a fatal error leaves as itself)
        async with anyio.create_task_group() as tg:
            for _ in range(max(1, min(lanes, len(names)))):
                tg.start_soon(lane, todo)
    for name in names:
        if said[name] != _MISSING:
            log.warning("%s: not deleted: the index pages no longer show it, but the server "
                        "does not say it is gone (%s)", name,
                        "it answers it" if said[name] == _THERE else said[name])
    return [name for name in names if said[name] == _MISSING]
