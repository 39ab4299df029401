"""The `pubmed-mirror` command's entry point, outside the package so that it runs before the
package loads: importing `pubmed_mirror` takes about 0.3 s (aiohttp, sqlite3, ssl), and a
Ctrl-C in that time ended the command with a traceback. Now it ends as a Ctrl-C during a
run does: one line, exit 130 (`commands._args.EXIT_INTERRUPTED`, not imported here: that
would load the package)."""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from pubmed_mirror.cli import main as command
    except KeyboardInterrupt:
        print("pubmed-mirror: interrupted while starting: nothing was done", file=sys.stderr)
        return 130
    return command()  # (a Ctrl-C from here on: `cli.main`'s)
