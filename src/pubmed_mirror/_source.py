"""Where to mirror from: an FTP URL (with credentials that never come from the command line)
or an HTTP(S) directory URL."""

from __future__ import annotations

import logging
import netrc
import os
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio

from ._address import host_problem, port_of
from ._backoff import ServerGate
from ._errors import (
    BadSource,
    ConnectionLost,
    ConnectTimeout,
    LoginRefused,
    ServerUnreachable,
)
from ._pmc import pmc_source
from ._proxy import Proxy, parse_proxy, proxy_for
from ._pubmed import PRESETS
from ._ratelimit import TokenBucket
from ._s3 import S3Source

if TYPE_CHECKING:  # aiohttp takes ~200 ms to import and aioftp ~40 ms: each is imported
    from ._ftp import FtpSession, FtpTransport  # by the runs that use it only
    from ._http import HttpSession, HttpTransport

__all__ = ["EMAIL_ENV", "PASSWORD_ENV", "TRANSPORTS", "AutoSource", "FtpSource", "HttpSource",
           "S3Options", "check_email", "parse_source"]

log = logging.getLogger("pubmed_mirror")

TRANSPORTS = ("ftp", "https", "auto")  # for the presets

PASSWORD_ENV = "PUBMED_MIRROR_PASSWORD"
EMAIL_ENV = "PUBMED_MIRROR_EMAIL"  # read by the command; the library takes email=
_ANONYMOUS = ("anonymous", "ftp")
_SPECIALS = set('()<>[]\\,;:"')  # RFC 5322's, which an unquoted address cannot hold


def check_email(address: str, *, what: str = "email") -> str:
    """The address, when it is one (one '@' between a non-empty name and domain, printable
    ASCII without spaces or specials: it goes into a PASS command and a User-Agent comment);
    else BadSource naming `what`, never quoting the address (it is not printed either)."""
    name, at, domain = address.partition("@")
    if (not (name and at and domain) or "@" in domain
            or any(not "!" <= c <= "~" or c in _SPECIALS for c in address)):
        raise BadSource(f"{what} is not an e-mail address: use one '@' between a name and a "
                        "domain, without spaces, control or special characters")
    return address


def _check_location(host: str, port: int, path: str) -> None:
    """ValueError unless host, port and the remote directory are well formed."""
    if (problem := host_problem(host)) is not None:
        raise BadSource(f"{problem}: {host!r}")
    if not 0 < port < 65536:
        raise BadSource(f"invalid port {port}")
    if not path.startswith("/"):
        raise BadSource(f"the remote path must be absolute, got {path!r}")
    if any(c in path for c in "\r\n\0"):
        raise BadSource("the remote path contains control characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class FtpSource:
    """An FTP directory. The password is never shown by repr() or str()."""

    host: str
    port: int = 21
    path: str = "/"
    user: str = "anonymous"
    password: str = field(default="anonymous@", repr=False)
    default_include: tuple[str, ...] = ()  # a preset's default selection

    def __post_init__(self) -> None:
        _check_location(self.host, self.port, self.path)

    def __str__(self) -> str:
        user = "" if self.user in _ANONYMOUS else f"{self.user}@"
        port = "" if self.port == 21 else f":{self.port}"
        return f"ftp://{user}{self.host}{port}{self.path}"

    def remote_path(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def transport(self, *, connect_timeout: float, stall_timeout: float,
                  command_bucket: TokenBucket | None = None,
                  gate: ServerGate | None = None) -> FtpTransport:
        """The transport that opens sessions to this source's server."""
        from ._ftp import FtpTransport

        return FtpTransport(host=self.host, port=self.port, user=self.user,
                            password=self.password, connect_timeout=connect_timeout,
                            stall_timeout=stall_timeout, command_bucket=command_bucket,
                            gate=gate or ServerGate())

    @classmethod
    def parse(cls, url: str, *, netrc_file: str | os.PathLike[str] | None = None,
              email: str | None = None) -> FtpSource:
        """Parse `ftp://[user@]host[:port]/dir/` or a preset (`pubmed:baseline`,
        `pubmed:updatefiles`). A password comes from $PUBMED_MIRROR_PASSWORD or ~/.netrc,
        never from the URL (it would be visible in the process list); without one, an
        anonymous login gives `email` as its password (NCBI asks for it), else `anonymous@`."""
        if url in PRESETS:
            preset_url, include = PRESETS[url]
            return replace(cls.parse(preset_url, netrc_file=netrc_file, email=email),
                           default_include=include)
        if url.startswith("pubmed:"):
            raise BadSource(f"unknown preset {url!r}: use one of {', '.join(PRESETS)}")
        try:
            parts = urlsplit(url)
            port = port_of(parts, 21)
        except ValueError as exc:
            raise BadSource(f"malformed URL {url!r}: {exc}") from None
        if parts.scheme.lower() != "ftp":
            raise BadSource(f"unsupported URL {url!r}: expected ftp://host/dir/")
        if parts.password is not None:
            raise BadSource(
                f"do not put a password in the URL; set {PASSWORD_ENV} or use ~/.netrc"
            )
        if parts.query or parts.fragment:
            raise BadSource(f"malformed URL {url!r}: unexpected '?' or '#'")
        host = parts.hostname or ""
        user = unquote(parts.username) if parts.username else None
        path = unquote(parts.path) or "/"
        email = check_email(email) if email is not None else None
        user, password = _credentials(host, user, netrc_file, email)
        return cls(host=host, port=port, path=path, user=user, password=password)


def _credentials(
    host: str, user: str | None, netrc_file: str | os.PathLike[str] | None, email: str | None
) -> tuple[str, str]:
    """(user, password): the environment first, then ~/.netrc (like curl -n), else anonymous
    (with `email` as the password, for an anonymous user)."""
    if os.environ.get(PASSWORD_ENV):
        return user or "anonymous", os.environ[PASSWORD_ENV]
    path = Path(netrc_file) if netrc_file else Path.home() / ".netrc"
    entry = None
    if path.is_file():
        try:
            entry = netrc.netrc(path).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            entry = None
    if entry and entry[2] and (user is None or entry[0] == user):
        return entry[0] or user or "anonymous", entry[2]
    user = user or "anonymous"
    return user, email if email is not None and user in _ANONYMOUS else "anonymous@"


_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Options:
    """How an s3:// source is reached: `endpoint` an S3-compatible server (path-style; else
    AWS), `sign` with the standard AWS credentials (else anonymous), `requester_pays`."""

    endpoint: str | None = None
    sign: bool = False
    requester_pays: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSource:
    """A directory of a web server that lists it (an autoindex page, as NCBI's)."""

    scheme: str  # "http" or "https"
    host: str
    port: int
    path: str = "/"
    default_include: tuple[str, ...] = ()
    ca_file: Path | None = None  # https: trust these certificates (PEM) too
    proxy: Proxy | None = None  # the forward proxy its requests go through (`_proxy`)
    email: str | None = field(default=None, repr=False)  # a contact in the User-Agent

    def __post_init__(self) -> None:
        if self.email is not None:
            check_email(self.email)
        if self.scheme not in _DEFAULT_PORTS:
            raise BadSource(f"unsupported scheme {self.scheme!r}")
        _check_location(self.host, self.port, self.path)

    def __str__(self) -> str:
        port = "" if self.port == _DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.path}"

    def remote_path(self, name: str) -> str:
        return f"{self.path.rstrip('/')}/{name}"

    def transport(self, *, connect_timeout: float, stall_timeout: float,
                  command_bucket: TokenBucket | None = None,
                  gate: ServerGate | None = None) -> HttpTransport:
        from ._http import HttpTransport, user_agent

        context = None
        if self.scheme == "https" and self.ca_file is not None:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=self.ca_file)
        directory = self.path if self.path.endswith("/") else self.path + "/"
        return HttpTransport(scheme=self.scheme, host=self.host.strip("[]"), port=self.port,
                             probe=directory, connect_timeout=connect_timeout,
                             stall_timeout=stall_timeout, command_bucket=command_bucket,
                             ssl_context=context, gate=gate or ServerGate(),
                             proxy=self.proxy, user_agent=user_agent(self.email))

    @classmethod
    def parse(cls, url: str, *, ca_file: str | os.PathLike[str] | None = None,
              proxy: Proxy | None = None,
              netrc_file: str | os.PathLike[str] | None = None,
              email: str | None = None) -> HttpSource:
        """Parse `http[s]://host[:port]/dir/`; its requests go through `proxy` (--proxy)
        or the environment's proxy for it (`_proxy.proxy_for`)."""
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            port = port_of(parts, _DEFAULT_PORTS.get(scheme, 0))
        except ValueError as exc:
            raise BadSource(f"malformed URL {url!r}: {exc}") from None
        if scheme not in _DEFAULT_PORTS:
            raise BadSource(f"unsupported URL {url!r}: expected http(s)://host/dir/")
        if parts.username is not None or parts.password is not None:
            # not quoted: what follows the user name may be a password
            raise BadSource("malformed http(s) URL: no user names or passwords in it")
        if parts.query or parts.fragment:
            raise BadSource(f"malformed URL {url!r}: unexpected '?' or '#'")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        path = unquote(parts.path) or "/"
        return cls(scheme=scheme, host=host, port=port, path=path,
                   ca_file=Path(ca_file) if ca_file is not None else None,
                   proxy=proxy_for(scheme, host, port, explicit=proxy,
                                   netrc_file=netrc_file),
                   email=email)


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoSource:
    """One directory served over FTP and HTTPS (as NCBI's; or plain HTTP, a --fallback): FTP,
    unless FTP cannot connect or log in at the start of a run; then HTTP(S) for that run."""

    ftp: FtpSource
    https: HttpSource

    @property
    def path(self) -> str:
        return self.ftp.path

    @property
    def host(self) -> str:
        return self.ftp.host

    @property
    def default_include(self) -> tuple[str, ...]:
        return self.ftp.default_include

    def __str__(self) -> str:
        return f"{self.ftp} (or {self.https})"

    def remote_path(self, name: str) -> str:
        return self.ftp.remote_path(name)

    def transport(self, *, connect_timeout: float, stall_timeout: float,
                  command_bucket: TokenBucket | None = None,
                  gate: ServerGate | None = None) -> FallbackTransport:
        return FallbackTransport(
            self.ftp.transport(connect_timeout=connect_timeout, stall_timeout=stall_timeout,
                               command_bucket=command_bucket, gate=gate),
            self.https.transport(connect_timeout=connect_timeout, stall_timeout=stall_timeout,
                                 command_bucket=command_bucket, gate=gate))


class FallbackTransport:
    """FTP sessions, or HTTPS ones for the whole run once FTP failed to connect or log in
    before any FTP login of the run succeeded (said once, as a warning). The first
    connection decides before any other is tried, so a run never mixes the two."""

    _UNUSABLE = (ConnectionLost, ConnectTimeout, LoginRefused, ServerUnreachable)

    def __init__(self, ftp: FtpTransport, https: HttpTransport) -> None:
        self.ftp = ftp
        self.https = https
        self.using: str | None = None  # "ftp" or "https", once decided
        self._deciding = anyio.Lock()

    def __repr__(self) -> str:
        return f"FallbackTransport({self.ftp!r}, {self.https!r}, using={self.using})"

    async def connect(self) -> FtpSession | HttpSession:
        if self.using is None:
            async with self._deciding:
                if self.using is None:
                    return await self._decide()
        if self.using == "ftp":
            return await self.ftp.connect()
        return await self.https.connect()

    async def _decide(self) -> FtpSession | HttpSession:
        try:
            session = await self.ftp.connect()
        except self._UNUSABLE as exc:
            log.warning("FTP to %s failed (%s): using %s (%s) for this run",
                        self.ftp.address, exc, self.https.scheme.upper(), self.https.address)
            self.using = "https"  # decided, even if HTTPS fails too (its error then says why)
            return await self.https.connect()
        self.using = "ftp"
        return session


def parse_source(url: str, *, netrc_file: str | os.PathLike[str] | None = None,
                 ca_file: str | os.PathLike[str] | None = None,
                 transport: str = "auto", proxy: str | Proxy | None = None,
                 email: str | None = None, fallback: str | None = None,
                 s3: S3Options | None = None
                 ) -> FtpSource | HttpSource | AutoSource | S3Source:
    """An `ftp://`, `http://`, `https://` directory URL, an `s3://BUCKET/PREFIX/`, or a
    preset; a preset, or an FTP URL with a `fallback` (an `http(s)://` directory holding the
    same files, in place of a preset's NCBI HTTPS tree), over `transport` ("ftp", "https":
    the HTTP(S) tree alone, or "auto": FTP, falling back to HTTP(S)). HTTP(S) goes through
    `proxy` (a URL as --proxy takes it: no password) or the environment's. `email` is the
    anonymous FTP password and a contact in the HTTP User-Agent. `s3`: how an s3:// URL or
    a `pmc:` preset (PMC's bucket, `_pmc`) is reached (endpoint, signing)."""
    s3 = s3 or S3Options()
    if transport not in TRANSPORTS:
        raise BadSource(f"unknown transport {transport!r}: use one of {', '.join(TRANSPORTS)}")
    if isinstance(proxy, str):
        proxy = parse_proxy(proxy, from_argv=True, netrc_file=netrc_file)
    scheme = url.split(":", 1)[0].lower()
    if fallback is not None and scheme in ("s3", *_DEFAULT_PORTS):
        raise BadSource("fallback: only for ftp:// URLs and the presets, not "
                        f"{scheme}:// ones")
    if fallback is not None and scheme == "pmc":
        raise BadSource("fallback: only for ftp:// URLs and the pubmed: presets")
    if scheme == "pmc":  # PMC's bucket: an s3:// source, reached as `s3` says
        return pmc_source(url, endpoint=s3.endpoint, sign=s3.sign,
                          requester_pays=s3.requester_pays, ca_file=ca_file, proxy=proxy,
                          netrc_file=netrc_file, email=email)
    if scheme == "s3":
        return S3Source.parse(url, endpoint=s3.endpoint, sign=s3.sign,
                              requester_pays=s3.requester_pays, ca_file=ca_file, proxy=proxy,
                              netrc_file=netrc_file, email=email)
    if s3 != S3Options():
        raise BadSource("the --s3-* options are for s3:// URLs")
    if scheme in _DEFAULT_PORTS:
        return HttpSource.parse(url, ca_file=ca_file, proxy=proxy, netrc_file=netrc_file,
                                email=email)
    ftp = FtpSource.parse(url, netrc_file=netrc_file, email=email)
    if fallback is not None and transport == "ftp":
        raise BadSource("fallback: not with transport 'ftp' (FTP alone: nothing would use it)")
    if fallback is not None:
        https = _fallback(fallback, ca_file=ca_file, proxy=proxy, netrc_file=netrc_file,
                          email=email)
    elif url in PRESETS and transport != "ftp":
        https = HttpSource(scheme="https", host=ftp.host, port=443, path=ftp.path,
                           ca_file=Path(ca_file) if ca_file is not None else None,
                           proxy=proxy_for("https", ftp.host, 443, explicit=proxy,
                                           netrc_file=netrc_file),
                           email=email)
    else:
        return ftp
    https = replace(https, default_include=ftp.default_include)
    return https if transport == "https" else AutoSource(ftp=ftp, https=https)


def _fallback(url: str, *, ca_file: str | os.PathLike[str] | None, proxy: Proxy | None,
              netrc_file: str | os.PathLike[str] | None, email: str | None) -> HttpSource:
    """The fallback's HttpSource; BadSource saying it is the fallback that is wrong."""
    try:
        return HttpSource.parse(url, ca_file=ca_file, proxy=proxy, netrc_file=netrc_file,
                                email=email)
    except BadSource as exc:
        raise BadSource(f"fallback: {exc}") from None
