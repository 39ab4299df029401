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
from collections.abc import Sequence

from ._errors import FatalError, MirrorError, RemoteFileError, describe
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
                       retry: RetryPolicy) -> list[str]:
    """The names of `names` (recorded, not listed) that the server says are gone; each
    other one is warned about, naming the answer, and kept."""
    log.info("asking the server about %d files before deleting them", len(names))
    answers: dict[str, str] = {}  # a directory's answer: _THERE, _MISSING or why kept
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

    async def verdict(name: str) -> str:
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            folder = SEPARATOR.join(parts[:depth])
            if folder not in answers:
                answers[folder] = await answer(folder, folder=True)
            if answers[folder] not in (_THERE, _MISSING):  # refused: it keeps what it holds
                return answers[folder]
        return await answer(name, folder=False)

    gone = []
    for name in names:
        if silent is None:
            try:
                said = await verdict(name)
            except _Unanswered as exc:
                silent = said = f"the server did not answer: {exc}"
        else:
            said = silent
        if said == _MISSING:
            gone.append(name)
        else:
            log.warning("%s: not deleted: the index pages no longer show it, but the server "
                        "does not say it is gone (%s)", name,
                        "it answers it" if said == _THERE else said)
    return gone
