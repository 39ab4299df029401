"""An S3-compatible server for the s3:// tests: moto's standalone server on 127.0.0.1, filled
with botocore, and `S3FaultProxy`, a small aiohttp server in front of it (in a thread of its
own) that records every request and injects faults: a GET cut short, a corrupt body, 503
SlowDown, an error for one listing page, AccessDenied."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit
from xml.sax.saxutils import escape as xml_escape

import aiohttp
import botocore.session
from aiohttp import web

from webfaults import in_thread, server_context
from webservers import stop_process

_RUNNING = re.compile(rb"Running on http://127\.0\.0\.1:(\d+)")


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a port the system picks; its URL."""
    exe = Path(sys.executable).parent / "moto_server"
    server = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 30
        port = None
        drain = threading.Thread()
        while port is None and time.monotonic() < deadline:
            line = server.stdout.readline()
            if not line:
                raise RuntimeError("moto_server ended before it listened")
            if match := _RUNNING.search(line):
                port = int(match.group(1))
        assert port is not None, "moto_server did not say where it listens"
        # its log goes on: drain it so that the pipe never fills
        drain = threading.Thread(target=server.stdout.read, daemon=True)
        drain.start()
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)
        if server.stdout is not None:
            drain.join(5)
            server.stdout.close()


def s3_client(endpoint: str) -> Any:
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing")


def make_bucket(client: Any, name: str, *, public: bool = True) -> None:
    """A bucket; `public`: anonymous GETs and HEADs allowed by policy (moto lists to
    anyone). AWS allows a HEAD by s3:GetObject; moto asks the policy for "s3:HeadObject"
    (an action AWS does not have), and refused an anonymous HEAD of a single-part object."""
    client.create_bucket(Bucket=name)
    if public:
        client.put_bucket_policy(Bucket=name, Policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": "*",
                "Action": ["s3:GetObject", "s3:HeadObject"],
                "Resource": f"arn:aws:s3:::{name}/*"}]}))


def put_multipart(client: Any, bucket: str, key: str, parts: list[bytes], *,
                  algorithm: str | None = None, kind: str | None = None) -> str:
    """An object uploaded in parts (all but the last >= 5 MiB), with a checksum by
    `algorithm` ("SHA256", "CRC32", ...) of type `kind` ("FULL_OBJECT", "COMPOSITE") when
    given; its ETag."""
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload = client.create_multipart_upload(
        Bucket=bucket, Key=key, **extra, **({"ChecksumType": kind} if kind else {}))["UploadId"]
    done = []
    for number, data in enumerate(parts, 1):
        answer = client.upload_part(Bucket=bucket, Key=key, UploadId=upload,
                                    PartNumber=number, Body=data, **extra)
        done.append({"PartNumber": number, "ETag": answer["ETag"]})
        if algorithm:
            done[-1][f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
    answer = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                              MultipartUpload={"Parts": done})
    return str(answer["ETag"])


@dataclass
class S3Fault:
    """kind: "cut" (the GET's headers and `after` bytes of its body, then the connection
    drops), "corrupt" (the body with its byte at `after` changed), "unencoded" (a listing
    answered as by a server that ignores `encoding-type=url`: keys as they are, no
    `<EncodingType>`), "unsorted" (a listing page with its keys in reverse order),
    "looping" (an empty listing page that says more follow, from the very continuation
    token it was asked with, or "LOOP" for the first: a server whose listing never ends),
    "slowdown" (503 SlowDown, Retry-After `seconds`), "error" (500 InternalError), "deny"
    (403 AccessDenied), "delay" (the answer, `seconds` late).
    `match` says which request it is for (the first that matches takes it)."""

    kind: str
    match: Callable[[Seen], bool]
    after: int = 0
    seconds: float = 1


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # as sent (percent-encoded)
    query: dict[str, list[str]]
    headers: dict[str, str]
    status: int = 0
    at: float = field(default_factory=time.monotonic)
    peer: int = 0  # the client's port: one per connection

    @property
    def listing(self) -> bool:
        return self.query.get("list-type") == ["2"]

    def key(self, bucket: str) -> str | None:
        prefix = f"/{bucket}/"
        return self.path[len(prefix):] if self.path.startswith(prefix) else None


@dataclass
class S3FaultProxy:
    """In front of `upstream`; `url` is the --s3-endpoint to give."""

    upstream: str
    faults: list[S3Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    port: int = 0
    # keys shown as encrypted with SSE-KMS: their listed and answered ETag is 32 hex digits
    # that are not their MD5, their answers say `x-amz-server-side-encryption: aws:kms`
    kms: set[str] = field(default_factory=set)
    _kms_shown: dict[str, str] = field(default_factory=dict)  # a KMS ETag shown: moto's own
    tls: tuple[Path, Path] | None = None  # (certificate, key): served over https

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def gets(self, bucket: str, key: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET" and s.key(bucket) == key]

    def heads(self, bucket: str) -> list[Seen]:
        return [s for s in self.seen if s.method == "HEAD" and s.key(bucket)]

    def listings(self) -> list[Seen]:
        return [s for s in self.seen if s.listing]

    @contextmanager
    def running(self) -> Iterator[S3FaultProxy]:
        async def serve(started: threading.Event, stop: asyncio.Event) -> None:
            async with aiohttp.ClientSession(auto_decompress=False) as self._client:
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", self._forward)
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                site = web.TCPSite(runner, "127.0.0.1", 0,
                                   ssl_context=server_context(self.tls))
                await site.start()
                self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
                started.set()
                await stop.wait()
                await runner.cleanup()

        with in_thread(serve):
            yield self

    def _fault(self, seen: Seen) -> S3Fault | None:
        for fault in self.faults:
            if fault.kind in ("cut", "corrupt") and seen.method != "GET":
                continue  # a body's faults: a HEAD has none
            if fault.match(seen):
                self.faults.remove(fault)
                return fault
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        parts = urlsplit(raw)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen = Seen(request.method, parts.path, parse_qs(parts.query),
                    {k.lower(): v for k, v in request.headers.items()},
                    peer=peer[1] if peer else 0)
        fault = self._fault(seen)
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        canned = _canned(fault)
        if canned is not None:
            self.seen.append(Seen(**{**seen.__dict__, "status": canned.status}))
            return canned
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "connection", "content-length")}
        for name in ("If-Range", "If-Match"):  # a KMS ETag back to moto's own
            if name in headers:
                headers[name] = self._kms_shown.get(headers[name], headers[name])
        if fault is not None and fault.kind == "looping":  # (moto refuses a made-up token)
            raw = parts.path + "?" + "&".join(
                p for p in parts.query.split("&") if not p.startswith("continuation-token="))
        async with self._client.request(request.method, self.upstream + raw, headers=headers,
                                        data=await request.read(),
                                        allow_redirects=False) as answer:
            body = await answer.read()
            self.seen.append(Seen(**{**seen.__dict__, "status": answer.status}))
            kept = {k: v for k, v in answer.headers.items()
                    if k.lower() not in ("connection", "transfer-encoding", "server", "date")}
        key = (parts.path.split("/", 2) + [""])[2]
        if seen.listing and self.kms:
            body = _kms_listing(body, self.kms, self._kms_shown)
            kept = {k: v for k, v in kept.items() if k.lower() != "content-length"}
        elif unquote_plus(key) in self.kms:
            kept = {k: _kms_etag(v, self._kms_shown) if k.lower() == "etag" else v
                    for k, v in kept.items()}
            kept["x-amz-server-side-encryption"] = "aws:kms"
        if fault is not None and fault.kind == "unencoded":
            body = _unencoded(body)
            kept = {k: v for k, v in kept.items() if k.lower() != "content-length"}
        if fault is not None and fault.kind == "unsorted":
            body = _reversed(body)
        if fault is not None and fault.kind == "looping":
            body = _looping(body, seen.query.get("continuation-token", ["LOOP"])[0])
            kept = {k: v for k, v in kept.items() if k.lower() != "content-length"}
        if fault is not None and fault.kind == "corrupt" and len(body) > fault.after:
            at = fault.after
            body = body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1:]
        response = web.StreamResponse(status=answer.status, headers=kept)
        if request.method == "HEAD":
            response.content_length = int(kept.get("Content-Length", "0"))
            await response.prepare(request)
            return response
        await response.prepare(request)
        if fault is not None and fault.kind == "cut":
            await response.write(body[:fault.after])
            await asyncio.sleep(0.05)
            if request.transport is not None:
                request.transport.close()  # mid-body: the client sees the connection end
            return response
        await response.write(body)
        await response.write_eof()
        return response


def _kms_etag(etag: str, shown: dict[str, str]) -> str:
    """The ETag shown for a KMS-encrypted object: 32 hex digits, not its MD5 (and in
    `shown`, the ETag it stands for)."""
    kms = '"' + hashlib.md5(etag.encode()).hexdigest() + '"'
    shown[kms] = etag
    return kms


def _kms_listing(body: bytes, keys: set[str], shown: dict[str, str]) -> bytes:
    """A ListObjectsV2 answer with the ETags of `keys` shown as KMS ones."""
    def entry(match: re.Match[str]) -> str:
        found = re.search(r"<Key>([^<]*)</Key>", match.group(0))
        if found is None or unquote_plus(found.group(1)) not in keys:
            return match.group(0)
        return re.sub(r"<ETag>([^<]*)</ETag>", lambda e: "<ETag>" + xml_escape(_kms_etag(
            e.group(1).replace("&quot;", '"').replace("&#34;", '"'), shown)) + "</ETag>",
            match.group(0))
    return re.sub(r"<Contents>.*?</Contents>", entry, body.decode(), flags=re.S).encode()


def _reversed(body: bytes) -> bytes:
    """A ListObjectsV2 answer with its `<Contents>` in reverse order (the same length)."""
    text = body.decode()
    found = re.findall(r"<Contents>.*?</Contents>", text, flags=re.S)
    backwards = iter(reversed(found))
    return re.sub(r"<Contents>.*?</Contents>", lambda _: next(backwards), text,
                  flags=re.S).encode()


def _looping(body: bytes, token: str) -> bytes:
    """A ListObjectsV2 answer with no key that says it is truncated, its next page at
    `token`."""
    text = re.sub(r"<Contents>.*?</Contents>|<NextContinuationToken>[^<]*"
                  r"</NextContinuationToken>", "", body.decode(), flags=re.S)
    text = re.sub(r"<IsTruncated>[^<]*</IsTruncated>", "<IsTruncated>true</IsTruncated>", text)
    text = re.sub(r"<KeyCount>[^<]*</KeyCount>", "<KeyCount>0</KeyCount>", text)
    return text.replace("</ListBucketResult>", f"<NextContinuationToken>{xml_escape(token)}"
                        "</NextContinuationToken></ListBucketResult>").encode()


def _unencoded(body: bytes) -> bytes:
    """A ListObjectsV2 answer with its keys decoded (XML-escaped instead) and its
    `<EncodingType>` gone."""
    text = re.sub(r"<EncodingType>[^<]*</EncodingType>", "", body.decode())
    text = re.sub(r"<Key>([^<]*)</Key>",
                  lambda m: f"<Key>{xml_escape(unquote_plus(m.group(1)))}</Key>", text)
    return text.encode()


def _canned(fault: S3Fault | None) -> web.Response | None:
    """The error answers a fault makes in S3's own form."""
    if fault is None or fault.kind in ("cut", "corrupt", "unencoded", "unsorted", "delay",
                                       "looping"):
        return None
    status, code, extra = {
        "slowdown": (503, "SlowDown", {"Retry-After": str(fault.seconds)}),
        "error": (500, "InternalError", {}),
        "deny": (403, "AccessDenied", {}),
    }[fault.kind]
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>injected</Message><RequestId>1</RequestId></Error>")
    return web.Response(status=status, body=body.encode(), headers=extra,
                        content_type="application/xml")


@contextmanager
def slow_metadata_service(delay: float) -> Iterator[str]:
    """An EC2 instance metadata service (IMDSv2) on 127.0.0.1 handing out the credentials
    AKIDIMDS / imds-secret, each answer `delay` seconds late (botocore gives it 1 s); its
    URL, for AWS_EC2_METADATA_SERVICE_ENDPOINT."""
    role = "/latest/meta-data/iam/security-credentials/"
    answers = {("PUT", "/latest/api/token"): "a-token", ("GET", role): "mirror-role",
               ("GET", role + "mirror-role"): json.dumps({
                   "Code": "Success", "AccessKeyId": "AKIDIMDS",
                   "SecretAccessKey": "imds-secret", "Token": "imds-token",
                   "Expiration": "2099-01-01T00:00:00Z"})}

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            time.sleep(delay)
            body = answers.get((self.command, self.path))
            self.send_response(200 if body is not None else 404)
            data = (body or "").encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = _answer

        def log_message(self, *args: Any) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            thread.join(10)
