"""Exit codes, argument types (each refuses bad input in one line, before any network I/O)
and the option groups the commands share."""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .._lifecycle import DeleteLimit
from .._pmc import PMC_PRESETS
from .._proxy import parse_proxy
from .._pubmed import PRESETS
from .._source import TRANSPORTS, parse_source

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONCURRENCY = 4  # NCBI's FTP and HTTPS: polite
S3_CONCURRENCY, S3_MAX_CONCURRENCY = 16, 64  # S3 is built for many connections
PROG = "pubmed-mirror"
T = TypeVar("T")


# -- argument types: each refuses bad input with one line, before any network I/O ---------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_rate(text: str) -> int:
    """'500K', '20M', '1.5G' (1024-based) or plain bytes per second -> int bytes/s."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: use e.g. 500K, 20M, 1.5G")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value < 1 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"invalid rate {text!r}: must be at least 1 byte/s")
    return int(value)


def parse_delete_limit(text: str) -> DeleteLimit:
    """'10' (files) or '20%' (of the files the manifest records) -> DeleteLimit."""
    number = text.strip().removesuffix("%")
    try:
        value = float(number) if text.strip().endswith("%") else int(number)
        if text.strip().endswith("%"):
            return DeleteLimit(share=value / 100)
        return DeleteLimit(count=int(value), share=None)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid --max-delete {text!r}: a number of files (10) or a percentage (20%) "
            "from 0 to 100") from None


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= minimum, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            bound = "at least 1" if minimum == 1 else f"{minimum} or more"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _positive_number(what: str) -> Callable[[str], float]:
    """An argparse type: a positive finite number of `what`, with a one-line error otherwise."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive number of {what}, got {text!r}")
        return value

    return parse


positive_int = _whole_number(1)
_count = _whole_number(0)
_seconds = _positive_number("seconds")
_per_second = _positive_number("commands per second")


def _glob(text: str) -> str:
    if not text or "\0" in text or "" in text.split("/"):
        raise argparse.ArgumentTypeError(
            f"invalid glob {text!r}: a file-name pattern, or a path pattern (`dir/*.xml`) "
            "without an empty component")
    depth = 0
    for c in text:  # fnmatch silently takes an unclosed '[' literally: refuse it instead
        depth += c == "["
        depth -= c == "]" and depth > 0
    if depth:
        raise argparse.ArgumentTypeError(f"invalid glob {text!r}: unclosed '['")
    return text


def directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("a directory is needed, got an empty name")
    return Path(text)


def source_url(text: str) -> str:
    """The URL or preset as given, once it parses (the source is made in `main`, with
    --ca-file and --transport)."""
    try:
        parse_source(text)
        return text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def proxy_url(text: str) -> str:
    """--proxy as given, once it is `http://host[:port]` without a password (the proxy is
    made in `main`, with the source)."""
    try:
        parse_proxy(text, from_argv=True, netrc_file=os.devnull)
        return text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# -- the parser -----------------------------------------------------------------------------------

URL_HELP = (f"ftp://[user@]host[:port]/dir/, http[s]://host[:port]/dir/, "
            f"s3://BUCKET/PREFIX/ or a preset: {', '.join([*PRESETS, *PMC_PRESETS])}")


def network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect-timeout", type=_seconds, default=30.0, metavar="S",
                   help="TCP connect + login, default 30")
    p.add_argument("--stall-timeout", type=_seconds, default=60.0, metavar="S",
                   help="no byte for S seconds, default 60")
    p.add_argument("--retries", type=_count, default=5, metavar="N",
                   help="retries in a row without progress, default 5")
    p.add_argument("--ca-file", type=Path, metavar="PEM",
                   help="https: also trust the certificates in this file")
    p.add_argument("--proxy", type=proxy_url, metavar="URL",
                   help="http(s) through this http:// proxy (beats https_proxy/http_proxy; "
                        "credentials from the environment's proxy URL or ~/.netrc)")
    p.add_argument("--email", metavar="ADDR",  # checked in main: one line, like the variable
                   help="anonymous FTP password and User-Agent contact (default: "
                        "$PUBMED_MIRROR_EMAIL, else anonymous@ and none)")
    p.add_argument("--s3-endpoint", metavar="URL",  # checked in main, with the source
                   help="s3:// from this S3-compatible server, http[s]://host[:port] "
                        "(path-style; default: AWS)")
    p.add_argument("--s3-sign", action="store_true",
                   help="s3://: sign requests with the standard AWS credentials (AWS_* "
                        "variables, AWS_PROFILE, ~/.aws); needs pubmed-mirror[s3]")
    p.add_argument("--s3-requester-pays", action="store_true",
                   help="s3://, with --s3-sign: a requester-pays bucket")
    p.add_argument("--transport", choices=TRANSPORTS,
                   help="for the pubmed: presets (and --fallback): ftp, https, or auto "
                        "(default: FTP, falling back to HTTPS for the run when FTP cannot "
                        "connect or log in)")
    p.add_argument("--fallback", metavar="URL",  # checked in main: one line, no usage block
                   help="for an ftp:// URL or a preset: an http(s):// directory holding the "
                        "same files, for a file FTP cannot deliver and for a run FTP cannot "
                        "start (a preset's default: NCBI's HTTPS tree)")


def output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="newline-delimited JSON on stdout, for machines")
    loudness = p.add_mutually_exclusive_group()
    loudness.add_argument("-q", "--quiet", action="store_true",
                          help="print only failures and errors")
    loudness.add_argument("-v", "--verbose", action="store_true", help="log what happens")


def mirror_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--concurrency", type=positive_int, metavar="N",
                   help=f"parallel sessions (control connections), default 4 (s3://: "
                        f"{S3_CONCURRENCY}, at most {S3_MAX_CONCURRENCY})")
    p.add_argument("--rate-limit", type=parse_rate, metavar="RATE",
                   help="cap on total bytes/s, e.g. 500K, 20M, 1.5G (1024-based)")
    p.add_argument("--command-rate", type=_per_second, metavar="N",
                   help="cap on FTP commands per second over all sessions")
    p.add_argument("--include", type=_glob, action="append", default=[], metavar="GLOB")
    p.add_argument("--exclude", type=_glob, action="append", default=[], metavar="GLOB")
    p.add_argument("--recursive", action="store_true",
                   help="mirror the subdirectories too (symbolic links are skipped)")
    p.add_argument("--max-depth", type=_count, metavar="N",
                   help="at most N levels of subdirectories below URL (0: URL's own files; "
                        "implies --recursive)")
    p.add_argument("--newest", type=_count, metavar="N",
                   help="only the last N files by PubMed file number")
    p.add_argument("--max-files", type=_count, metavar="N")
    p.add_argument("--file-timeout", type=_seconds, metavar="S",
                   help="give up on a file after S seconds over all its attempts")
    p.add_argument("--no-verify", action="store_true",
                   help="do not check files against their NAME.md5")
    p.add_argument("--no-split", action="store_true",
                   help="never split a large file over idle sessions at the end of a run")
    p.add_argument("--no-splice", action="store_true",
                   help="receive through a buffer (recv_into + write) instead of os.splice")
    p.add_argument("--delete", action="store_true",
                   help="remove recorded files the listing no longer holds, and PubMed years "
                        "superseded by a complete newer one")
    p.add_argument("--max-delete", type=parse_delete_limit, default=None,
                   metavar="N|P%", help="with --delete, refuse to remove more files than this "
                                        "for leaving the listing (default 50%%)")
    p.add_argument("--progress-every", type=_seconds, default=5.0, metavar="S",
                   help="when stdout is not a terminal, a progress line every S seconds")
    network_options(p)
    output_options(p)
