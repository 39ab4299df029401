"""What a listing could have shown: a recorded file out of its sight is never taken for gone
from the server (`--delete`), nor its part for a leftover. A directory that could not be
listed, or was not entered as a loop, hides what it holds; a name deeper than `--max-depth`
was never asked for (a run after one with more levels must not take its files for gone)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from ._tree import SEPARATOR

__all__ = ["HIDING", "sight_condition", "sight_test"]

# the kinds of a staged directory whose files the listing does not show
HIDING = ("unlisted", "loop")


def sight_condition(db: sqlite3.Connection, depth: int | None) -> str:
    """A condition on `f.name` in `db` (the staged listing's): a name the listing could
    have shown. "1" when nothing is out of sight: no function call per recorded file."""
    seen = sight_test(db, depth)
    if seen is None:
        return "1"
    db.create_function("in_sight", 1, seen, deterministic=True)
    return "in_sight(f.name)"


def sight_test(db: sqlite3.Connection, depth: int | None) -> Callable[[str], int] | None:
    """`sight_condition`'s test of a name; None when every name is in sight."""
    unlisted = frozenset(r[0] for r in db.execute(
        f"SELECT name FROM staged WHERE kind IN {HIDING}"))
    if depth is None and not unlisted:
        return None
    below = tuple(name + SEPARATOR for name in unlisted)

    def seen(name: str) -> int:
        if depth is not None and name.count(SEPARATOR) > depth:
            return 0
        return int(name not in unlisted and not name.startswith(below))

    return seen
