"""Where a URL points: its host and port, checked before any I/O (a malformed one is
BadSource, exit 2, not a connection to somewhere the user did not name)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from ._errors import BadSource

__all__ = ["check_endpoint", "host_problem", "port_of"]

_NAME = re.compile(r"[A-Za-z0-9._\-]+")  # ("_": names in /etc/hosts, Docker's)
_NUMBER = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")


def host_problem(host: str, *, any_name: bool = False) -> str | None:
    """What is wrong with `host` (a name, an IPv4 address, or an IPv6 one, in brackets or
    not), or None. A name whose last label is a number is an IPv4 address to a URL parser
    (WHATWG's, yarl's): it must be one, written out (`300`, `1.2.3`, `0x7f.1` are refused;
    aiohttp fails on some of them, and the rest reach an address the user did not write).
    `any_name`: a name need not be ASCII letters, digits, '.', '-' and '_' (a proxy's)."""
    if ":" in host:
        address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if "%" in address:
            return "an IPv6 zone is not supported"
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return "not an IPv6 address"
        return None
    if not host or not (any_name or _NAME.fullmatch(host)):
        return "invalid host name"
    if _NUMBER.fullmatch(host.rstrip(".").rpartition(".")[2]):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "not an IPv4 address (four numbers 0-255, as in 127.0.0.1)"
    return None


def port_of(parts: SplitResult, default: int) -> int:
    """The URL's port, `default` when it names none; ValueError for one out of range (1 to
    65535: a port 0 is not "no port")."""
    port = parts.port  # (ValueError beyond 65535 or not a number)
    if port is None:
        return default
    if port == 0:
        raise ValueError("port 0 is out of range 1-65535")
    return port


def check_endpoint(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `--s3-endpoint http[s]://host[:port]`; else BadSource."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        port = port_of(parts, {"http": 80, "https": 443}.get(scheme, 0))
    except ValueError as exc:
        raise BadSource(f"malformed --s3-endpoint {url!r}: {exc}") from None
    if scheme not in ("http", "https") or not parts.hostname:
        raise BadSource(f"malformed --s3-endpoint {url!r}: expected http[s]://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise BadSource(f"malformed --s3-endpoint {url!r}: only http[s]://host[:port]")
    host = parts.hostname
    if (problem := host_problem(host)) is not None:
        raise BadSource(f"malformed --s3-endpoint {url!r}: {problem}")
    return scheme, host, port
