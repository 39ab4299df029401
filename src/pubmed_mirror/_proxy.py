"""Which HTTP proxy a request goes through, read as curl reads it.

`--proxy URL` (an `http://` proxy) beats the environment: `https_proxy`/`HTTPS_PROXY` for
https URLs, `http_proxy`/`HTTP_PROXY` for http ones (the lower-case name first, as curl;
the upper-case `HTTP_PROXY` is honoured too: no CGI environment can set it here).
`no_proxy`/`NO_PROXY` names the hosts reached directly, by curl's rules: `*` alone means
every host; otherwise a comma- or space-separated list of names, each matching itself and
the names below it (`example.com` and `.example.com` both match `ftp.example.com`), IP
addresses, and IP networks in CIDR form (`10.0.0.0/8`). An entry with a port
(`host:8080`) matches that port only (curl ignores the port; a port there means one).

The proxy's credentials come from its URL in the environment, or from ~/.netrc (the
proxy's host as the machine), never from the command line (they would be visible in the
process list); they never appear in repr(), str() or any message.
"""

from __future__ import annotations

import base64
import ipaddress
import netrc
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ._address import host_problem, port_of
from ._errors import BadSource

__all__ = ["Proxy", "bypassed", "parse_proxy", "proxy_for"]

_DEFAULT_PORT = 1080  # as curl
_VARIABLES = {"https": ("https_proxy", "HTTPS_PROXY"), "http": ("http_proxy", "HTTP_PROXY")}


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxy:
    """An `http://` forward proxy: CONNECT for https, absolute-form requests for http."""

    host: str
    port: int
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return self.url

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The proxy's URL without credentials (safe to show)."""
        return f"http://{self.address}"

    def authorization(self) -> str | None:
        """The Proxy-Authorization header's value (Basic), when there are credentials."""
        if self.user is None:
            return None
        pair = f"{self.user}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def parse_proxy(text: str, *, from_argv: bool = False,
                netrc_file: str | os.PathLike[str] | None = None) -> Proxy:
    """`http://[user[:password]@]host[:port][/]` as a Proxy (BadSource when malformed).
    From the environment the scheme may be left out (as curl); from the command line it
    must be there and a password must not (it would be visible in the process list)."""
    shown = _hidden(text)
    if "://" not in text and not from_argv:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = port_of(parts, _DEFAULT_PORT)
    except ValueError:
        raise BadSource(f"malformed proxy URL {shown!r}: expected http://host[:port]") from None
    if parts.scheme.lower() != "http":
        raise BadSource(f"unsupported proxy URL {shown!r}: expected http://host[:port]")
    host = parts.hostname or ""
    if (not host or parts.path not in ("", "/") or parts.query or parts.fragment
            or any(c.isspace() or c in "\0/\\" for c in host)
            or host_problem(host, any_name=True) is not None):
        raise BadSource(f"malformed proxy URL {shown!r}: expected http://host[:port]")
    if parts.password is not None and from_argv:
        raise BadSource("do not put the proxy's password on the command line; set it in "
                        "https_proxy/http_proxy or ~/.netrc")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None:
        user, password = _netrc(host, user, netrc_file)
    return Proxy(host=host, port=port, user=user, password=password)


def _hidden(text: str) -> str:
    """`text` with any password in it replaced by `***` (for messages)."""
    scheme, sep, rest = text.rpartition("://")
    credentials, at, location = rest.rpartition("@")
    if not at:
        return text
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{location}"


def _netrc(host: str, user: str | None,
           netrc_file: str | os.PathLike[str] | None) -> tuple[str | None, str | None]:
    """(user, password) for the proxy's host from ~/.netrc (the user, when the URL names
    one, must be the entry's), else the URL's user alone."""
    path = Path(netrc_file) if netrc_file else Path.home() / ".netrc"
    try:
        entry = netrc.netrc(path).authenticators(host) if path.is_file() else None
    except (netrc.NetrcParseError, OSError):
        entry = None
    if entry and entry[2] and (user is None or entry[0] == user):
        return entry[0] or user, entry[2]
    return user, None


def proxy_for(scheme: str, host: str, port: int, *, explicit: Proxy | None = None,
              environ: dict[str, str] | None = None,
              netrc_file: str | os.PathLike[str] | None = None) -> Proxy | None:
    """The proxy for `scheme://host:port`: `explicit` (--proxy) or the environment's,
    unless no_proxy names the host; None: straight to the server."""
    env = os.environ if environ is None else environ
    if bypassed(host, port, _first(env, ("no_proxy", "NO_PROXY"))):
        return None
    if explicit is not None:
        return explicit
    value = _first(env, _VARIABLES.get(scheme, ()))
    if not value:
        return None
    return parse_proxy(value, netrc_file=netrc_file)


def _first(env: os._Environ[str] | dict[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        if env.get(name, "").strip():
            return env[name].strip()
    return ""


def bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether `no_proxy` (curl's syntax, above) names `host` (on `port`)."""
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    name = host.strip("[]").rstrip(".").lower()
    for entry in no_proxy.replace(",", " ").split():
        if _matches(name, port, entry.lower()):
            return True
    return False


def _matches(name: str, port: int, entry: str) -> bool:
    entry, wanted = _split_port(entry)
    if wanted is not None and wanted != port:
        return False
    entry = entry.strip("[]").lstrip(".").rstrip(".")
    if not entry:
        return False
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return name == entry or name.endswith("." + entry)
    try:
        return address in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False  # a name never matches an address (curl resolves nothing here)


def _split_port(entry: str) -> tuple[str, int | None]:
    """An entry's host and port (`host:8080`, `[::1]:8080`); a bare IPv6 address has none."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return (host, int(port)) if port.isdigit() else (entry, None)
    return entry, None
