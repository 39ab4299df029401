"""The `pubmed-mirror` command: the parser and `main`. Each command is a module of
`commands/` (`commands.mirror`, `commands.status`, ...); they and this module are the only
ones that import rich."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import ssl
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import anyio
from rich.console import Console

from ._errors import BadSource, DatasetError, DestinationBusy, MirrorError
from ._plan import check_writable
from ._pubmed import PRESETS
from ._s3 import S3Source
from ._source import (
    EMAIL_ENV,
    AutoSource,
    FtpSource,
    HttpSource,
    S3Options,
    check_email,
    parse_source,
)
from ._state import check_manifest_path, check_state_dir
from .commands import add_parsers
from .commands._args import (
    DEFAULT_CONCURRENCY,
    EXIT_FAILED,
    EXIT_USAGE,
    PROG,
    S3_CONCURRENCY,
    S3_MAX_CONCURRENCY,
)
from .commands._output import interrupted


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Mirror NCBI PubMed (or any FTP or HTTP(S) directory) fast, politely, "
                    "correctly, and keep it a dataset a loader can trust.",
    )
    add_parsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def _fail(error: BaseException, args: argparse.Namespace) -> None:
    # plain print: one line, never wrapped to the terminal's width
    print(f"{PROG}: error: {error}", file=sys.stderr)
    if getattr(args, "json", False):  # the stream's last object says why it ends here
        try:
            print(json.dumps({"event": "error", "error": str(error)}), flush=True)
        except BrokenPipeError:  # its reader left (`| head`): the stderr line stands
            _stdout_gone()


def _stdout_gone() -> None:
    """Stdout's reader left: what is still written to it goes nowhere (the interpreter's
    last flush would raise BrokenPipeError again, as a traceback)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _email(flag: str | None) -> str | None:
    """--email, else $PUBMED_MIRROR_EMAIL (unset or empty: none), checked now."""
    if flag is not None:
        return check_email(flag, what="--email")
    value = os.environ.get(EMAIL_ENV)
    return check_email(value, what=f"${EMAIL_ENV}") if value else None


def _make_source(text: str, ca_file: Path | None, transport: str | None,
                 proxy: str | None = None, email: str | None = None,
                 fallback: str | None = None, s3: S3Options | None = None
                 ) -> FtpSource | HttpSource | AutoSource | S3Source:
    """The source the URL names, trusting `ca_file` too for https (checked now: a bad file
    is bad usage), over `transport` for a preset or with a `fallback` (--fallback), through
    `proxy` (--proxy) for HTTP(S) and S3, reaching S3 as `s3` says."""
    if transport is not None and text not in PRESETS and fallback is None:
        raise ValueError("--transport is for the pubmed: presets and --fallback (a URL's "
                         "scheme chooses)")
    try:
        source = parse_source(text, ca_file=ca_file, transport=transport or "auto",
                              proxy=proxy, email=email, fallback=fallback, s3=s3)
    except BadSource as exc:
        if not str(exc).startswith("fallback: "):
            raise
        raise ValueError(f"--{exc}") from None  # the flag, as the user wrote it
    if proxy is not None and isinstance(source, FtpSource):
        raise ValueError("--proxy is for http(s):// URLs and the presets over HTTPS")
    if ca_file is not None:
        if isinstance(source, FtpSource):
            raise ValueError("--ca-file is for https:// URLs")
        try:  # (a bare context: loading the system's trust store too took ~50 ms of CPU)
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"--ca-file {ca_file}: not a readable PEM certificate file "
                             f"({getattr(exc, 'strerror', None) or exc})") from None
    return source


def _s3_options(args: argparse.Namespace) -> S3Options:
    return S3Options(endpoint=getattr(args, "s3_endpoint", None),
                     sign=getattr(args, "s3_sign", False),
                     requester_pays=getattr(args, "s3_requester_pays", False))


def _concurrency(args: argparse.Namespace) -> None:
    """--concurrency's default by source (S3 is built for many connections, NCBI's servers
    are asked for few), and S3's ceiling."""
    if args.command != "mirror":
        return
    s3 = isinstance(args.url, S3Source)
    if args.concurrency is None:
        args.concurrency = S3_CONCURRENCY if s3 else DEFAULT_CONCURRENCY
    elif s3 and args.concurrency > S3_MAX_CONCURRENCY:
        raise ValueError(f"--concurrency for s3:// is at most {S3_MAX_CONCURRENCY}, "
                         f"got {args.concurrency}")


def main(argv: Sequence[str] | None = None) -> int:
    """The command; the process is expected to end when it returns."""
    try:
        return _command(argv)
    except KeyboardInterrupt:  # before a command's own handler said so (parsing, starting)
        return interrupted()
    finally:
        # the interpreter's last collections would walk every object of the run only to
        # free them as the process ends (~0.08 s of CPU, benchmarks/results/WHY.md); frozen,
        # they go with the process (everything the run opened is closed by now)
        gc.freeze()


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format=f"{PROG}: %(levelname)s: %(message)s",
                        level=logging.INFO if args.verbose else logging.WARNING)
    dest = getattr(args, "dest", None)
    try:
        if args.command in ("mirror", "demo") and dest:  # before any network I/O
            if getattr(args, "dry_run", 0):
                check_manifest_path(dest)  # (what check_writable checks first, as the run)
                check_state_dir(dest)  # a dry run only reads: DEST may be read-only
            else:
                check_writable(dest)
        if hasattr(args, "url"):
            args.url = _make_source(args.url, getattr(args, "ca_file", None),
                                    getattr(args, "transport", None),
                                    getattr(args, "proxy", None),
                                    _email(getattr(args, "email", None)),
                                    getattr(args, "fallback", None), _s3_options(args))
            _concurrency(args)
    except (MirrorError, ValueError) as exc:
        _fail(exc, args)
        return EXIT_USAGE
    try:
        command: Callable[[argparse.Namespace, Console], Awaitable[int]] = args.func
        return anyio.run(command, args, Console(highlight=False))
    except (DestinationBusy, DatasetError) as exc:
        _fail(exc, args)
        return EXIT_USAGE
    except MirrorError as exc:
        _fail(exc, args)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader of stdout left (`| head`): stop, quietly
        _stdout_gone()
        return EXIT_FAILED
    except OSError as exc:  # a local failure the library did not name (it should): one line
        _fail(exc, args)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
