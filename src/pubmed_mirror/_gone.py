"""`--delete` over a web server: a recorded file its index pages no longer show goes only
once the server says it is gone.

An autoindex page leaves out what the server will not serve: Apache omits a directory or
file it may not read, which is then still on the server, refused (403), not gone. So each
recorded name the listing no longer shows is asked for (HEAD) before it is deleted, and
goes only on a 404 or 410, or a redirect to NAME/ (the file became a directory). Its
directories are asked first, from the top, once each: a directory that is gone (404, 410)
takes every name below it along without asking for each, and one that answers anything
but a success keeps them. FTP listings and S3's show what is there, readable or not: no
name of theirs is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ._errors import MirrorError, RemoteFileError, describe
from ._http import HttpSession
from ._httperrors import Redirected
from ._pool import SessionPool
from ._retry import RetryPolicy
from ._source import HttpSource
from ._tree import SEPARATOR

__all__ = ["confirm_gone"]

log = logging.getLogger("pubmed_mirror")

_GONE = ("404", "410")
_THERE = "there"


async def confirm_gone(pool: SessionPool, source: HttpSource, names: Sequence[str],
                       retry: RetryPolicy) -> list[str]:
    """The names of `names` (recorded, not listed) that the server says are gone; each
    other one is warned about, naming the answer, and kept."""
    answers: dict[str, str] = {}  # a directory's answer: "gone", _THERE, or why not known

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
        except RemoteFileError as exc:
            if (exc.reply or "")[:3] in _GONE:
                return "gone"
            return describe(exc)
        except MirrorError as exc:
            return describe(exc)
        return "gone" if directory_now else _THERE  # (the file became a directory)

    async def verdict(name: str) -> str:
        parts = name.split(SEPARATOR)
        for depth in range(1, len(parts)):
            folder = SEPARATOR.join(parts[:depth])
            if folder not in answers:
                answers[folder] = await answer(folder, folder=True)
            if answers[folder] != _THERE:
                return answers[folder]
        return await answer(name, folder=False)

    gone = []
    for name in names:
        said = await verdict(name)
        if said == "gone":
            gone.append(name)
        else:
            log.warning("%s: not deleted: the index pages no longer show it, but the server "
                        "does not say it is gone (%s)", name,
                        "it answers it" if said == _THERE else said)
    return gone
