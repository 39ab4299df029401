"""The S3 source: the objects of a bucket under a prefix, anonymous unless told to sign.

Listed with ListObjectsV2 (`_s3list`: pages parsed as they arrive, a failed page asked
again from its own continuation token), read with the HTTP transport's ranged GETs over
kept-alive connections (`_http`: resume, answer checks, stall timeout, the server gate for
503 SlowDown, proxies). Addressing: AWS's virtual-hosted `https://BUCKET.s3.amazonaws.com/`
(another region once the bucket's answer names it in `x-amz-bucket-region`), or path-style
`ENDPOINT/BUCKET/KEY` on an S3-compatible server (`--s3-endpoint`). Signed requests use
botocore's SigV4 signer (an optional extra), on top of our own requests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ._address import check_endpoint
from ._backoff import ServerGate
from ._digest import Checksum
from ._errors import (
    BadSource,
    ConnectionLost,
    LoginRefused,
    ProtocolError,
    RemoteFileError,
    ServerUnreachable,
    WrongVersion,
)
from ._httpcheck import head_entry
from ._proxy import Proxy, proxy_for
from ._ratelimit import TokenBucket
from ._s3list import Listing, PageParser, error_code, etag_md5, in_key_order, page_query
from ._select import Selector, other_etag
from ._transport import EntrySink, ReadStream, RemoteEntry, listing_deadline
from ._whole import HeldBody

if TYPE_CHECKING:
    import aiohttp

    from ._direct import Mover
    from ._http import HttpSession, HttpTransport
    from ._retry import RetryPolicy
    from ._select import Borrow, Rule
    from ._state import Manifest
    from ._transfer import RemoteFile

__all__ = ["S3Session", "S3Source", "S3Transport", "check_bucket", "object_checksum"]

log = logging.getLogger("pubmed_mirror")

DEFAULT_REGION = "us-east-1"
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ERROR_LIMIT = 64 << 10
_LISTING_PAGE_LIMIT = 64 << 20
_MULTIPART = re.compile(r'-\d+"?$')  # an ETag `"...-N"`: of an upload in N parts
_CHECKSUMS = ("sha256", "sha1", "crc32", "crc32c", "crc64nvme")

_CREDENTIAL_SOURCES = ("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and "
                       "~/.aws/credentials")
_CREDENTIALS_HELP = f"give credentials with --s3-sign ({_CREDENTIAL_SOURCES})"


def check_bucket(name: str) -> str:
    """The name, when it follows S3's bucket naming rules (3-63 lowercase letters, digits,
    dots and hyphens, beginning and ending with a letter or digit, no '..', not an IP
    address); else BadSource."""
    if not _BUCKET.fullmatch(name) or ".." in name or ".-" in name or "-." in name:
        raise BadSource(f"invalid S3 bucket name {name!r}: 3-63 lowercase letters, digits, "
                        "dots and hyphens, beginning and ending with a letter or digit")
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        raise BadSource(f"invalid S3 bucket name {name!r}: an IP address")
    return name


def object_checksum(headers: Mapping[str, str], *, multipart: bool) -> Checksum | None:
    """The object's own checksum from an answer asked with `x-amz-checksum-mode: ENABLED`
    (header names lowercased), None when it carries none. Of a `multipart` upload it is of
    the whole file only when `x-amz-checksum-type: FULL_OBJECT` says so (CRC64NVME is never
    anything else); otherwise it is composite, of the parts' checksums: AWS says so with the
    type and a `-N` ending, older servers (and moto's HEAD) with neither."""
    kind = headers.get("x-amz-checksum-type", "").strip().upper()
    for algorithm in _CHECKSUMS:
        value = headers.get(f"x-amz-checksum-{algorithm}", "").strip()
        if value:
            whole = kind == "FULL_OBJECT" or algorithm == "crc64nvme" or (
                not multipart and kind != "COMPOSITE")
            return Checksum(algorithm, value, composite=not whole or "-" in value)
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Source:
    """The objects of `bucket` whose keys begin with `prefix` ("" or ending in "/"); keys
    relative to it are the entry names. `endpoint`: an S3-compatible server's
    `http[s]://host[:port]` (path-style), else AWS. `sign`: with credentials from the
    standard AWS chain (botocore), else anonymous; `requester_pays` says so in each request.
    `narrow`: only the keys beginning with `prefix + narrow` are listed (a preset's: PMC's
    article versions, `PMC...`, among other keys at the bucket's root), still named
    relative to `prefix`. `select`: of those, the groups of keys a metadata object of
    theirs selects (`_select`; PMC's licence presets)."""

    scheme: ClassVar[str] = "s3"
    # ListObjectsV2 gives every key once, in UTF-8 binary order across its pages, and a
    # page once given is kept (`S3Session.resumes_listings`): files may be fed as pages land
    sorted_listing: ClassVar[bool] = True
    # one listing is every key under the prefix, at any depth: never walked (`_walk`)
    lists_whole_tree: ClassVar[bool] = True

    bucket: str
    prefix: str = ""
    narrow: str = ""
    endpoint: str | None = None
    sign: bool = False
    requester_pays: bool = False
    region: str = DEFAULT_REGION
    default_include: tuple[str, ...] = ()
    ca_file: Path | None = None
    proxy: Proxy | None = None
    email: str | None = field(default=None, repr=False)
    select: Rule | None = None

    def __post_init__(self) -> None:
        check_bucket(self.bucket)
        if self.prefix and not self.prefix.endswith("/"):
            raise BadSource(f"the S3 prefix must end with '/', got {self.prefix!r}")
        if any(c in self.prefix for c in "\r\n\0") or self.prefix.startswith("/"):
            raise BadSource(f"invalid S3 prefix {self.prefix!r}")
        if any(c in self.narrow for c in "/\r\n\0"):
            raise BadSource(f"invalid S3 key narrowing {self.narrow!r}: one level, no '/'")
        if self.endpoint is not None:
            check_endpoint(self.endpoint)
        if self.requester_pays and not self.sign:
            raise BadSource("--s3-requester-pays needs --s3-sign (AWS bills the signer)")

    def __str__(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        narrow = f"{self.narrow}*" if self.narrow else ""
        chosen = f" ({self.select})" if self.select is not None else ""
        return f"s3://{self.bucket}/{self.prefix}{narrow}{chosen}{where}"

    @property
    def host(self) -> str:
        """The server its requests go to (a `MirrorClient` shares one connection cap and
        one back-off per server): the endpoint's host, else the bucket's own AWS name, so
        mirrors of one bucket's prefixes (`pmc:metadata` and `pmc:articles`) share them."""
        if self.endpoint is not None:
            _, host, port = check_endpoint(self.endpoint)
            return f"{host}:{port}"
        return f"{self.bucket}.s3.amazonaws.com"

    @property
    def path(self) -> str:
        return self.prefix

    def remote_path(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def transport(self, *, connect_timeout: float, stall_timeout: float,
                  command_bucket: TokenBucket | None = None,
                  gate: ServerGate | None = None) -> S3Transport:
        return S3Transport(self, connect_timeout=connect_timeout, stall_timeout=stall_timeout,
                           command_bucket=command_bucket, gate=gate or ServerGate())

    @classmethod
    def parse(cls, url: str, *, endpoint: str | None = None, sign: bool = False,
              requester_pays: bool = False, ca_file: str | os.PathLike[str] | None = None,
              proxy: Proxy | None = None,
              netrc_file: str | os.PathLike[str] | None = None,
              email: str | None = None) -> S3Source:
        """`s3://BUCKET/PREFIX/` (the prefix may be empty: the whole bucket). A prefix
        without its last `/` names the same directory (as `aws s3` and rclone take it), never
        the keys that merely begin with it."""
        if not url.startswith("s3://"):
            raise BadSource(f"unsupported URL {url!r}: expected s3://BUCKET/PREFIX/")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if "?" in url or "#" in url or "@" in bucket or ":" in bucket:
            raise BadSource(f"malformed URL {url!r}: expected s3://BUCKET/PREFIX/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        if sign:
            _botocore()  # a missing extra is bad usage, said before any I/O
        scheme, host, port = (check_endpoint(endpoint) if endpoint is not None
                              else ("https", f"{check_bucket(bucket)}.s3.amazonaws.com", 443))
        return cls(bucket=bucket, prefix=prefix, endpoint=endpoint, sign=sign,
                   requester_pays=requester_pays,
                   ca_file=Path(ca_file) if ca_file is not None else None,
                   proxy=proxy_for(scheme, host, port, explicit=proxy, netrc_file=netrc_file),
                   email=email)


def _botocore() -> Any:
    try:
        import botocore.session
    except ImportError:
        raise BadSource("signed S3 requests need botocore: pip install "
                        "'pubmed-mirror[s3]'") from None
    return botocore.session


class AwsSigner:
    """SigV4 headers for a request (a `Signer`), by botocore, with credentials from the
    standard chain (environment, AWS_PROFILE, ~/.aws/config and credentials, the container
    or instance metadata service). The chain may ask a service over the network: it is
    walked once, and temporary credentials refreshed, in a worker thread (`ready`,
    `fresh`), never on the event loop."""

    def __init__(self, region: str, requester_pays: bool, credentials: Any = None) -> None:
        self.region = region
        self.requester_pays = requester_pays
        self.credentials = credentials
        self._lock = anyio.Lock()

    def there(self, region: str) -> AwsSigner:
        """The same credentials, signing for another region."""
        return AwsSigner(region, self.requester_pays, self.credentials)

    async def ready(self) -> None:
        """The credentials found (LoginRefused when the chain has none)."""
        if self.credentials is not None:
            return
        async with self._lock:
            if self.credentials is None:
                self.credentials = await anyio.to_thread.run_sync(_credentials)

    async def fresh(self) -> None:
        """The credentials found, and temporary ones near their expiry refreshed, in a
        worker thread (signing would otherwise refresh them on the event loop)."""
        await self.ready()
        needed = getattr(self.credentials, "refresh_needed", None)  # temporary ones only
        if needed is not None and needed():
            async with self._lock:
                if needed():
                    await anyio.to_thread.run_sync(self.credentials.get_frozen_credentials)

    def __call__(self, method: str, url: str, headers: Mapping[str, str]) -> Mapping[str, str]:
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest

        assert self.credentials is not None, "AwsSigner.ready() first"
        extra = {"x-amz-request-payer": "requester"} if self.requester_pays else {}
        request = AWSRequest(method=method, url=url, headers={**headers, **extra})
        frozen = self.credentials.get_frozen_credentials()  # (refreshed by `fresh`)
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        return {k: v for k, v in request.headers.items() if k.lower() != "host"}


def _credentials() -> Any:
    """The standard chain's credentials (blocking); LoginRefused when it has none, or
    cannot be read (an unknown AWS_PROFILE, a broken ~/.aws/config)."""
    from botocore.exceptions import BotoCoreError

    try:
        credentials = _botocore().get_session().get_credentials()
    except BotoCoreError as exc:
        raise LoginRefused(f"--s3-sign cannot read the AWS credentials: {exc}") from None
    if credentials is None:
        raise LoginRefused(f"--s3-sign found no AWS credentials: set {_CREDENTIAL_SOURCES}")
    return credentials


class S3Transport:
    """Opens S3 sessions (HTTP sessions to the bucket's endpoint) and keeps what outlives
    one: the listing under way and the bucket's region once learned."""

    def __init__(self, source: S3Source, *, connect_timeout: float, stall_timeout: float,
                 command_bucket: TokenBucket | None, gate: ServerGate) -> None:
        self.source = source
        self.region = source.region
        self._options: dict[str, Any] = dict(
            connect_timeout=connect_timeout, stall_timeout=stall_timeout,
            command_bucket=command_bucket, gate=gate)
        self.listings: dict[str, Listing] = {}
        self.etags_doubted = False  # an object's MD5-like ETag was not its MD5 (`head`)
        self.selector: Selector | None = None  # a selection by metadata (`_select`)
        self.signer = (AwsSigner(self.region, source.requester_pays) if source.sign
                       else None)
        self.http = self._http()

    def __repr__(self) -> str:
        return f"S3Transport({self.source})"

    @property
    def gate(self) -> ServerGate:
        return self.http.gate

    def selecting(self, manifest: Manifest | None, borrow: Borrow | None, lanes: int,
                  retry: RetryPolicy) -> None:
        """The source's selection by metadata, if it has one, applied to its listing: what
        its metadata objects said remembered in `manifest`, read `lanes` at once (the
        listing's session and those `borrow` spares), each read retried by `retry`."""
        if self.source.select is not None:
            self.selector = Selector(self.source.select, manifest, borrow, lanes, retry)

    @property
    def address(self) -> str:
        return self.http.address

    @property
    def path_style(self) -> bool:
        return self.source.endpoint is not None

    def _http(self) -> HttpTransport:
        import ssl

        from ._http import HttpTransport, user_agent

        source = self.source
        if source.endpoint is not None:
            scheme, host, port = check_endpoint(source.endpoint)
        else:
            region = "" if self.region == DEFAULT_REGION else f".{self.region}"
            scheme, host, port = "https", f"{source.bucket}.s3{region}.amazonaws.com", 443
        context = None
        if scheme == "https" and source.ca_file is not None:
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=source.ca_file)
        return HttpTransport(scheme=scheme, host=host.strip("[]"), port=port, probe=None,
                             ssl_context=context, proxy=source.proxy,
                             user_agent=user_agent(source.email), signer=self.signer,
                             object_store=True, **self._options)

    # its sessions' connections are made while the listing's first page is awaited
    # (`SessionPool.warm`): a far store's first GETs then cost one round trip, not two
    warms = True

    def moved(self, region: str) -> None:
        """The bucket answered that it lives in `region`: sessions opened from now on go
        (and sign) there."""
        if region != self.region:
            self.region = region
            if self.signer is not None:
                self.signer = self.signer.there(region)
            self.http = replace(self._http(), gate=self.http.gate)

    def url_path(self, key: str) -> str:
        """The path of a key (or of the bucket, for "") as the server is addressed."""
        return f"/{self.source.bucket}/{key}" if self.path_style else f"/{key}"

    async def connect(self) -> S3Session:
        if self.signer is not None:
            await self.signer.ready()
        return S3Session(await self.http.connect(), self)


_Page = list[RemoteEntry]  # (in the class, `list` is the method)


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """What a HEAD in checksum mode says of an object: `entry`, its size, time and ETag as
    it is now (its `md5`: a single-part ETag's); its own `checksum` (None when it has none);
    whether a single-part ETag of it is its MD5 (`etag_is_md5`: not when it is encrypted
    with SSE-KMS, 32 hex digits as it looks)."""

    entry: RemoteEntry
    checksum: Checksum | None
    etag_is_md5: bool


class S3Session:
    """One HTTP session to the bucket's endpoint, speaking S3 on top of it."""

    reads_whole = True  # a small object is received into memory (`_whole`)

    def __init__(self, http: HttpSession, transport: S3Transport) -> None:
        self.http = http
        self.transport = transport
        self._region = transport.region  # the one it was opened for

    def __repr__(self) -> str:
        return f"<S3Session {self.transport.source}>"

    @property
    def healthy(self) -> bool:
        return self.http.healthy and self._region == self.transport.region

    @healthy.setter
    def healthy(self, value: bool) -> None:
        self.http.healthy = value

    async def warm(self) -> None:
        await self.http.warm()

    # a whole page goes to a listing's sink once: asked again, the listing goes on from the
    # page that failed (see `Session.list`)
    resumes_listings = True

    async def list(self, path: str, sink: EntrySink | None = None) -> list[RemoteEntry]:
        """Every object under the prefix `path`, page by page; a listing left unfinished by
        an error goes on from its next page when asked again (on any session). With `sink`,
        each page's entries go to it once the page is whole, and none is returned."""
        import anyio

        from ._errors import TransferStalled

        source = self.transport.source
        narrow = source.narrow if path == source.prefix else ""
        listing = self.transport.listings.setdefault(path, Listing(path, narrow))
        deadline = listing_deadline(self.http.transport.stall_timeout)
        selector = self.transport.selector if path == source.prefix else None
        while not listing.done:
            with anyio.move_on_after(deadline) as page_time:
                page, token, done = await self._page(listing)
            if page_time.cancelled_caught:
                raise TransferStalled(f"a listing page was not complete within {deadline:g} s",
                                      path=path)
            if not done and token is not None and token in listing.tokens:
                raise ProtocolError("the listing goes back to a continuation token it gave "
                                    "before: it would never end", path=path)
            last = in_key_order(listing.last, page, path)
            held = listing.held
            if selector is not None:
                page, held = await selector.choose(held, page, done, self)
            if sink is None:
                listing.entries.extend(page)
            else:
                await sink(page)
            # the listing moves on once the page is kept: an error before asks it again
            listing.token, listing.done, listing.held, listing.last = token, done, held, last
            listing.pages += 1
            if token is not None:
                listing.tokens.add(token)
        del self.transport.listings[path]
        return listing.entries

    async def document(self, name: str, limit: int) -> tuple[bytes, str | None]:
        """A small object read whole, and its ETag (`_select`: a metadata object); more
        than `limit` bytes is a RemoteFileError. Not counted in the run's bytes nor paced
        by --rate-limit, as listing pages are not: metadata the selection reads, no file."""
        path = self.transport.source.remote_path(name)
        body = bytearray()
        with self._not_public():
            async with self.http._request("GET", self.transport.url_path(path),
                                          phase="retr", label=path) as response:
                length = response.headers.get("Content-Length", "")
                while chunk := await response.content.readany():  # (read(n): buffered)
                    body += chunk
                    if len(body) > limit:
                        raise RemoteFileError(f"larger than {limit} bytes", path=path)
                etag = response.headers.get("ETag")
        if length.isdigit() and len(body) != int(length):
            raise ConnectionLost(f"{len(body)} of its {length} bytes came", path=path)
        return bytes(body), etag

    @contextlib.contextmanager
    def _not_public(self) -> Iterator[None]:
        """An object refused (403) to an anonymous request: said so, with how credentials
        are given (the listing's refusal says it of the bucket, `_error`)."""
        try:
            yield
        except RemoteFileError as exc:
            if (self.transport.source.sign or self.transport.http.proxy is not None
                    or not (exc.reply or "").startswith("403")):  # (a proxy's own 403?)
                raise
            raise RemoteFileError(f"{exc.message}: the object is not public (it refuses "
                                  f"anonymous reading): {_CREDENTIALS_HELP}", path=exc.path,
                                  reply=exc.reply) from exc

    async def _page(self, listing: Listing) -> tuple[_Page, str | None, bool]:
        """One page's entries, the next page's token and whether it was the last."""
        label = f"{self.transport.source} (listing page {listing.pages + 1})"
        parser = PageParser(listing.prefix, label)
        found: list[RemoteEntry] = []
        received = 0
        async with self.http._request(
                "GET", self.transport.url_path(""), phase="list", label=label,
                query=page_query(listing.prefix + listing.narrow, listing.token),
                on_error=self._error) as response:
            while chunk := await response.content.readany():
                received += len(chunk)
                if received > _LISTING_PAGE_LIMIT:
                    raise ConnectionLost("a listing page over 64 MiB", path=label)
                found.extend(parser.feed(chunk))
        found.extend(parser.close())
        return found, parser.token, not parser.truncated

    async def _error(self, response: aiohttp.ClientResponse, label: str) -> None:
        """S3's refusals of a listing that no retry gets past, one line each; others go on
        to the generic classification (503 SlowDown: the server gate)."""
        body = await response.content.read(_ERROR_LIMIT) if response.status != 304 else b""
        code, message = error_code(body)
        region = response.headers.get("x-amz-bucket-region")
        source = self.transport.source
        if region and region != self.transport.region and response.status in (301, 307, 400):
            self.transport.moved(region)
            raise ConnectionLost(f"the bucket is in {region}: asking there", path=label)
        reply = f"{response.status} {code or response.reason or ''}".strip()
        if code == "NoSuchBucket" or (code is None and response.status == 404):
            raise ServerUnreachable(f"no such bucket: {source.bucket}", path=str(source),
                                    reply=reply)
        if code in ("AccessDenied", "AllAccessDisabled") or response.status == 403:
            if not source.sign:
                raise LoginRefused(f"the bucket is not public (it refuses anonymous "
                                   f"listing): {_CREDENTIALS_HELP}", path=str(source),
                                   reply=reply)
            raise LoginRefused(f"access denied to these credentials: {message or code}",
                               path=str(source), reply=reply)
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                    "InvalidToken", "AuthorizationHeaderMalformed"):
            raise LoginRefused(f"the credentials were refused ({code})", path=str(source),
                               reply=reply)

    async def head(self, path: str, etag: str | None) -> ObjectHead:
        """HEAD with `x-amz-checksum-mode: ENABLED` (`ObjectHead`). WrongVersion when the
        object is no longer the version of `etag` (when given)."""
        async with self.http._request(
                "HEAD", self.transport.url_path(path), phase="stat", label=path,
                headers={"x-amz-checksum-mode": "ENABLED"}) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
        now = headers.get("etag")
        if other_etag(now, etag):
            raise WrongVersion(f"changed on the server since the listing (ETag {now}, "
                               f"listed {etag})", path=path)
        multipart = _MULTIPART.search(now or etag or "") is not None
        entry = head_entry(headers, path.rsplit("/", 1)[-1])
        encryption = headers.get("x-amz-server-side-encryption", "").lower()
        return ObjectHead(replace(entry, md5=etag_md5(entry.validator)),
                          object_checksum(headers, multipart=multipart),
                          not encryption.startswith("aws:kms"))

    async def doubt(self, path: str, etag: str | None) -> ObjectHead | None:
        """`head`, for an object whose MD5-like ETag a download did not match, or of a
        bucket where one was not an MD5 (`etags_doubted`: from then on every object is
        asked before its first byte). A server that refuses the HEAD (moto does, to
        anonymous requests) leaves the ETag an MD5."""
        try:
            head = await self.head(path, etag)
        except RemoteFileError as exc:
            log.info("%s: cannot ask whether its ETag is an MD5 (%s): taken as one", path,
                     exc)
            return None
        checksum = head.checksum
        if not head.etag_is_md5:
            said = self.transport.etags_doubted
            self.transport.etags_doubted = True
            (log.info if said else log.warning)(
                "%s: encrypted with SSE-KMS, so its ETag is not an MD5: checked by %s%s",
                path, "its own checksum" if checksum is not None and checksum.checkable
                else "its size only", "" if said else " (and so the bucket's other "
                "objects, each asked with a HEAD first)")
        return head

    async def stat(self, path: str) -> RemoteEntry:
        """Size, time and ETag of one object (HEAD)."""
        entry = await self.http.stat(self.transport.url_path(path), label=path)
        return replace(entry, name=path.rsplit("/", 1)[-1], md5=etag_md5(entry.validator))

    @contextlib.asynccontextmanager
    async def open_read(self, path: str, offset: int, *, buffer: int | None = None,
                        expect: RemoteFile | None = None) -> AsyncIterator[ReadStream]:
        """The object from `offset` on; a metadata object the selection read to decide its
        group (`Selector.take`), of the version `expect` names, comes from memory."""
        selector, prefix = self.transport.selector, self.transport.source.prefix
        if (selector is not None and offset == 0 and expect is not None
                and path.startswith(prefix)
                and (kept := selector.take(path[len(prefix):], expect.validator)) is not None):
            yield HeldBody(kept, expect.validator)
            return
        with self._not_public():
            async with self.http.open_read(self.transport.url_path(path), offset,
                                           buffer=buffer, expect=expect) as body:
                yield body

    @contextlib.asynccontextmanager
    async def open_direct(self, path: str, offset: int, *, buffer: int | None = None,
                          mover: Mover = "splice", expect: RemoteFile | None = None
                          ) -> AsyncIterator[Any]:
        with self._not_public():
            async with self.http.open_direct(self.transport.url_path(path), offset,
                                             buffer=buffer, mover=mover, expect=expect
                                             ) as body:
                yield body

    async def aclose(self) -> None:
        await self.http.aclose()
