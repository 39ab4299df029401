"""The HTTP(S) transport: the installed command against Apache httpd and nginx from Debian
(autoindex listings, plain and TLS), and the library against a small aiohttp server that
injects faults (early close, stall, 429 with Retry-After, 503, a 200 to a Range request,
hostile names)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import rest_at
from pubmed_mirror import (
    FileRetrying,
    MirrorOptions,
    RemoteFile,
    RetryPolicy,
    Timeouts,
    fetch_file,
    list_remote,
    mirror,
)
from pubmed_mirror._autoindex import AutoindexParser
from pubmed_mirror._demo import make_pubmed_tree
from pubmed_mirror._source import AutoSource, FtpSource, HttpSource, parse_source
from pubmed_mirror._transfer import part_path, prepare_part
from test_cli import command, run
from webfaults import ConnectionLog, FaultyWebServer, WebFault, served_app
from webservers import apache, lighttpd, mini_httpd, missing, nginx, python_http, served_copy

Tree = tuple[Path, dict[str, bytes]]
DIRECTORY = "pubmed/updatefiles/"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Path, dict[str, bytes]]]:
    """Four PubMed-shaped files (~1 MiB each, with NAME.md5), readable by the servers."""
    source = Path(tempfile.mkdtemp(prefix="pm-http-src-"))
    try:
        make_pubmed_tree(source, files=4, target_bytes=1 << 20)
        files = {p.name: p.read_bytes() for p in (source / DIRECTORY).iterdir()}
        with served_copy(source / "pubmed") as base:
            yield base, files
    finally:
        shutil.rmtree(source)



SERVERS = [("apache", "table", False), ("apache", "pre", True), ("apache", "plain", False),
           ("nginx", None, True), ("lighttpd", None, False), ("mini_httpd", None, False),
           ("python", None, False)]


def _server(kind: str, style: str | None, docroot: Path,
            tls: tuple[Path, Path] | None) -> Any:
    if kind == "apache":
        return apache(docroot, style=style or "table", tls=tls)
    if kind in ("lighttpd", "mini_httpd", "python"):
        return {"lighttpd": lighttpd, "mini_httpd": mini_httpd, "python": python_http}[kind](
            docroot)
    return nginx(docroot, tls=tls)


def summary(out: str) -> dict[str, Any]:
    last = json.loads(out.splitlines()[-1])
    assert last["event"] == "summary"
    return dict(last)


@pytest.mark.parametrize(("kind", "style", "tls"), SERVERS,
                         ids=[f"{k}-{s or 'autoindex'}-{'https' if t else 'http'}"
                              for k, s, t in SERVERS])
def test_mirror_from_a_web_server(served: tuple[Path, dict[str, bytes]],
                                  certificate: tuple[Path, Path], tmp_path: Path,
                                  kind: str, style: str | None, tls: bool) -> None:
    """The installed command mirrors the directory byte for byte, every data file checked
    against its NAME.md5; the second run transfers nothing."""
    if reason := missing(kind):
        pytest.skip(reason)
    base, files = served
    dest = tmp_path / "mirror"
    with _server(kind, style, base, certificate if tls else None) as port:
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/pubmed/updatefiles/"
        trust = ["--ca-file", str(certificate[0])] if tls else []
        first = run("mirror", url, "--dest", str(dest), "--json", *trust)
        assert first.returncode == 0, first.stderr
        second = run("mirror", url, "--dest", str(dest), "--json", *trust)
        assert second.returncode == 0, second.stderr
        listed = run("ls", url, "--json", *trust)
        assert listed.returncode == 0, listed.stderr
    checked = run("verify", str(dest))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert {json.loads(line)["name"] for line in listed.stdout.splitlines()
            if '"name"' in line} == set(files)
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    data_files = [n for n in files if n.endswith(".xml.gz")]
    done = [json.loads(line) for line in first.stdout.splitlines()
            if '"file_done"' in line]
    assert sorted(e["name"] for e in done if e["md5"]) == sorted(data_files)
    assert summary(second.stdout)["bytes_received"] == 0


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_warmed_session_sends_its_first_request_on_the_connection_it_made(
        served: tuple[Path, dict[str, bytes]], certificate: tuple[Path, Path],
        scheme: str) -> None:
    """`warm` (S3's sessions, while the listing is awaited) makes the connection, TLS's
    handshake included, that the session's next request then goes on: one connection in
    all, made before the request."""
    import ssl

    from pubmed_mirror._http import HttpTransport

    base, files = served
    name = sorted(files)[0]
    tls = certificate if scheme == "https" else None
    context = ssl.create_default_context(cafile=str(certificate[0])) if tls else None

    async def warm_then_ask(port: int, log: ConnectionLog) -> tuple[int, int | None]:
        transport = HttpTransport(scheme=scheme, host="127.0.0.1", port=port, probe=None,
                                  ssl_context=context)
        session = await transport.connect()
        try:
            await session.warm()
            warmed = await anyio.to_thread.run_sync(log.wait_for, 1)
            entry = await session.stat(f"/{DIRECTORY}/{name}")
        finally:
            await session.aclose()
        return warmed, entry.size

    with apache(base, tls=tls) as port, ConnectionLog(port).running() as log:
        warmed, size = anyio.run(warm_then_ask, log.port, log)
    assert (warmed, size) == (1, len(files[name]))
    assert len(log.accepted) == 1


@pytest.mark.parametrize("grown", [0, 100_000], ids=["same-size", "grown"])
def test_a_file_rewritten_in_place_while_apache_sends_it_is_not_spliced(
        tmp_path: Path, grown: int) -> None:
    """Apache sends a file (no MD5) as it reads it: rewritten in place while one
    connection receives it, the answer is old bytes, then new ones. Once every byte is in,
    HEAD is asked again: the change is seen and the file fetched again whole, at its new
    size when it grew (the retry asks what it is now). Before, the spliced file became
    final, exit 0; a grown one failed every retry, asked at its listed size."""
    if reason := missing("apache"):
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="pm-rewrite-"))
    try:
        root.chmod(0o755)
        (root / "d").mkdir(mode=0o755)
        path = root / "d" / "big.bin"
        path.write_bytes(os.urandom(24 << 20))
        path.chmod(0o644)
        os.utime(path, (time.time() - 86400,) * 2)
        new = os.urandom((24 << 20) + grown)
        dest = tmp_path / "m"
        with apache(root) as port:
            proc = subprocess.Popen([*command(), "mirror", f"http://127.0.0.1:{port}/d/",
                                     "--dest", str(dest), "--rate-limit", "8M",
                                     "--concurrency", "1"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20
            while not (dest / "big.bin.part").exists():
                assert time.monotonic() < deadline and proc.poll() is None, "no transfer"
                time.sleep(0.02)
            time.sleep(1.0)  # a third of it in
            with open(path, "r+b") as rewritten:
                rewritten.write(new)
            out, err = proc.communicate(timeout=60)
    finally:
        shutil.rmtree(root)
    assert proc.returncode == 0, out + err
    assert (dest / "big.bin").read_bytes() == new
    assert "changed on the server while it was received" in out + err


def test_untrusted_certificate_is_one_line(served: tuple[Path, dict[str, bytes]],
                                           certificate: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    """Without --ca-file a self-signed certificate is refused (never trusted by default):
    exit 1, one line naming the certificate; a --ca-file that is not PEM is bad usage."""
    if reason := missing("apache"):
        pytest.skip(reason)
    with apache(served[0], tls=certificate) as port:
        url = f"https://127.0.0.1:{port}/pubmed/updatefiles/"
        refused = run("mirror", url, "--dest", str(tmp_path / "m"))
        bogus = tmp_path / "bogus.pem"
        bogus.write_text("not a certificate\n")
        usage = run("mirror", url, "--dest", str(tmp_path / "m"), "--ca-file", str(bogus))
    assert refused.returncode == 1
    assert "certificate" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert usage.returncode == 2 and "--ca-file" in usage.stderr


def test_the_system_trust_store_is_honoured(served: tuple[Path, dict[str, bytes]],
                                            certificate: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --ca-file, the system's trust store decides (here as SSL_CERT_FILE names it,
    which OpenSSL's default paths honour): a certificate it holds is trusted, for the
    listing and for every body (received on sockets of our own), MD5 checked."""
    if reason := missing("nginx"):
        pytest.skip(reason)
    base, files = served
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    dest = tmp_path / "mirror"
    with nginx(base, tls=certificate) as port:
        first = run("mirror", f"https://127.0.0.1:{port}/pubmed/updatefiles/", "--dest",
                    str(dest), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    assert summary(first.stdout)["done"] == len(files) - len(
        [n for n in files if n.endswith(".md5")])


def test_a_listing_without_times_is_not_vouched_by_size_alone(tmp_path: Path) -> None:
    """A listing of exact sizes and no times (Apache without its time column, as
    mini_httpd's unparsed dates were): a file replaced by one of the same size and another
    time is fetched again, never kept as it was."""
    if reason := missing("apache"):
        pytest.skip(reason)
    old, new = os.urandom(700), os.urandom(700)
    root = tmp_path / "src"
    root.mkdir()
    name = "pubmed26n0001.xml.gz"
    (root / name).write_bytes(old)
    (root / f"{name}.md5").write_text(f"MD5 ({name}) = {hashlib.md5(old).hexdigest()}\n")
    dest = tmp_path / "mirror"
    with served_copy(root) as base, apache(base, style="untimed") as port:
        url = f"http://127.0.0.1:{port}/pubmed/"
        first = run("mirror", url, "--dest", str(dest), "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        served = base / "pubmed"
        (served / name).write_bytes(new)
        (served / f"{name}.md5").write_text(f"MD5 ({name}) = {hashlib.md5(new).hexdigest()}\n")
        other = time.time() - 7200  # (Apache answers a time in the future as "now")
        for path in (served / name, served / f"{name}.md5"):
            os.utime(path, (other, other))
        second = run("mirror", url, "--dest", str(dest), "--json")
        third = run("mirror", url, "--dest", str(dest), "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    assert (dest / name).read_bytes() == new
    assert summary(second.stdout)["done"] == 1
    assert third.returncode == 0 and summary(third.stdout)["bytes_received"] == 0
    assert run("verify", str(dest)).returncode == 0


async def test_a_file_with_no_time_anywhere_is_fetched_again(tmp_path: Path) -> None:
    """A page of exact sizes without times, whose HEAD gives no Last-Modified nor ETag: a
    file replaced by one of the same size is fetched again, not kept on its size alone."""
    from aiohttp import web

    served = {"data.bin": os.urandom(700)}

    async def index(request: web.Request) -> web.Response:
        rows = "".join(f'<a href="{n}">{n}</a>      {len(d)}\n' for n, d in served.items())
        return web.Response(text=f"<title>Index of /p/</title><pre>{rows}</pre>",
                            content_type="text/html")

    async def body(request: web.Request) -> web.Response:  # no Last-Modified, no ETag
        return web.Response(body=served[request.match_info["name"]])

    app = web.Application()
    app.router.add_get("/p/", index)
    app.router.add_route("*", "/p/{name}", body)
    dest = tmp_path / "m"
    async with served_app(app) as port:
        args = ("mirror", f"http://127.0.0.1:{port}/p/", "--dest", str(dest), "--json")
        first = await anyio.to_thread.run_sync(functools.partial(run, *args))
        served["data.bin"] = os.urandom(700)
        second = await anyio.to_thread.run_sync(functools.partial(run, *args))
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert (dest / "data.bin").read_bytes() == served["data.bin"]
    assert summary(second.stdout)["done"] == 1


async def test_range_resume_from_apache(served: tuple[Path, dict[str, bytes]],
                                        tmp_path: Path) -> None:
    """A part holding the first 300,000 bytes is resumed with a Range request: only the
    rest is received."""
    if reason := missing("apache"):
        pytest.skip(reason)
    base, files = served
    name = next(n for n in sorted(files) if n.endswith(".xml.gz"))
    data = files[name]
    with apache(base) as port:
        source = HttpSource.parse(f"http://127.0.0.1:{port}/pubmed/updatefiles/")
        transport = source.transport(connect_timeout=5, stall_timeout=5)
        session = await transport.connect()
        try:
            entry = await session.stat(source.remote_path(name))
            remote = RemoteFile(source.remote_path(name), len(data), entry.mtime)
            dest = tmp_path / name
            prepare_part(part_path(dest), remote)
            part_path(dest).write_bytes(data[:300_000])
            result = await fetch_file(session, remote, dest)
        finally:
            await session.aclose()
    assert result.resumed_from == 300_000 and result.received == len(data) - 300_000
    assert dest.read_bytes() == data


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_apache_x_gzip_encoding_is_the_files_own_bytes(
        served: tuple[Path, dict[str, bytes]], certificate: tuple[Path, Path],
        tmp_path: Path, tls: bool) -> None:
    """Apache with `AddEncoding x-gzip .gz` answers .gz files as x-gzip-encoded: the body is
    the file as stored (its length and range total say so), so the directory is mirrored
    byte for byte and a part is resumed with a Range."""
    if reason := missing("apache"):
        pytest.skip(reason)
    base, files = served
    name = next(n for n in sorted(files) if n.endswith(".xml.gz"))
    with apache(base, tls=certificate if tls else None, gzip_encoding=True) as port:
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/pubmed/updatefiles/"
        source = HttpSource.parse(url, ca_file=certificate[0] if tls else None)
        session = await source.transport(connect_timeout=5, stall_timeout=5).connect()
        try:
            async with session.client.head(source.remote_path(name)) as answer:
                coding = answer.headers.get("Content-Encoding")
            entry = await session.stat(source.remote_path(name))
            remote = RemoteFile(source.remote_path(name), len(files[name]), entry.mtime)
            resumed = tmp_path / "one" / name
            prepare_part(part_path(resumed), remote)
            part_path(resumed).write_bytes(files[name][:300_000])
            result = await fetch_file(session, remote, resumed)
        finally:
            await session.aclose()
        report = await mirror(source, tmp_path / "m", opts())
    assert coding == "x-gzip"
    assert result.resumed_from == 300_000 and resumed.read_bytes() == files[name]
    assert report.ok, report.failed
    for each, data in files.items():
        assert (tmp_path / "m" / each).read_bytes() == data, each


async def test_listing_sizes_and_times(served: tuple[Path, dict[str, bytes]]) -> None:
    """Every style of listing gives exact sizes (rounded ones are asked with HEAD), files
    and directories told apart, times to the minute."""
    for kind, style in (("apache", "table"), ("apache", "pre"), ("apache", "plain"),
                        ("nginx", None)):
        if missing(kind):
            continue
        base, files = served
        with _server(kind, style, base, None) as port:
            entries = await list_remote(f"http://127.0.0.1:{port}/pubmed/")
            inner = await list_remote(f"http://127.0.0.1:{port}/pubmed/updatefiles/")
        assert [(e.name, e.kind) for e in entries] == [("updatefiles", "dir")], (kind, style)
        assert {e.name: e.size for e in inner} == {n: len(d) for n, d in files.items()}
        for e in inner:
            stamp = (base / DIRECTORY / e.name).stat().st_mtime
            assert e.mtime is not None and abs(e.mtime - stamp) < 61, (kind, style, e)


@pytest.mark.parametrize(("kind", "style"), [("apache", "table"), ("apache", "pre"),
                                           ("nginx", None), ("lighttpd", None),
                                           ("mini_httpd", None)])
def test_listing_times_are_read_from_the_page(served: tuple[Path, dict[str, bytes]],
                                              kind: str, style: str | None) -> None:
    """Each server's own page (its servers on UTC) gives every file's time to the minute,
    read from the page itself (no HEAD fills it in): Apache's `2026-12-06 12:00`, nginx's
    `06-Dec-2026 12:00`, lighttpd's `2026-Dec-06 12:00:59`, mini_httpd's `06Dec2026 12:00`."""
    if reason := missing(kind):
        pytest.skip(reason)
    base, files = served
    with _server(kind, style, base, None) as port:
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/{DIRECTORY}",
                                      timeout=10).read()
    parser = AutoindexParser()
    entries = [e for e in parser.feed(page) + parser.close() if e.kind == "file"]
    assert parser.is_index and {e.name for e in entries} == set(files)
    for e in entries:
        stamp = (base / DIRECTORY / e.name).stat().st_mtime
        assert e.mtime is not None and abs(e.mtime - stamp) < 61, (kind, e)


# -- faults, from a small aiohttp server ---------------------------------------------------------


@pytest.fixture
def web_tree(tmp_path: Path) -> Tree:
    root = tmp_path / "web"
    root.mkdir()
    files = {}
    for i, size in enumerate([3_000_001, 700_000], start=1):
        name = f"pubmed26n{i:04d}.xml.gz"
        data = hashlib.sha256(name.encode()).digest() * (size // 32 + 1)
        files[name] = data[:size]
        (root / name).write_bytes(files[name])
        (root / f"{name}.md5").write_text(
            f"MD5({name})= {hashlib.md5(files[name]).hexdigest()}\n")
    day_ago = time.time() - 86400  # listings show minutes: a file this recent would be
    for path in root.iterdir():    # taken for a new version on a retry (see same_version)
        os.utime(path, (day_ago, day_ago))
    return root, files


BIG = "pubmed26n0001.xml.gz"


def opts(**kwargs: Any) -> MirrorOptions:
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base=0.05, cap=0.2))
    kwargs.setdefault("timeouts", Timeouts(connect=5, stall=5))
    return MirrorOptions(**kwargs)


def _web(web_tree: Tree, scheme: str, certificate: tuple[Path, Path]) -> FaultyWebServer:
    return FaultyWebServer(web_tree[0], tls=certificate if scheme == "https" else None)


def _source(server: FaultyWebServer, certificate: tuple[Path, Path]) -> HttpSource:
    return HttpSource.parse(server.url, ca_file=certificate[0] if server.tls else None)


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_early_close_resumes_at_the_offset(web_tree: Tree, certificate: tuple[Path, Path],
                                                 tmp_path: Path, scheme: str) -> None:
    """A body cut short is resumed where it stopped (its overlap compared): the file is
    identical and the second GET asked for the range after what had arrived."""
    server = _web(web_tree, scheme, certificate)
    server.add(BIG, WebFault("close", after=1_234_567))
    async with server.running():
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(include=("*.xml.gz",)))
    assert report.ok and report.retries == 1, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == web_tree[1][BIG]
    assert server.stats.ranges[BIG] == [0, rest_at(1_234_567)]


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "recv"])
async def test_small_files_share_kept_alive_connections(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, splice: bool) -> None:
    """Over plain HTTP, small files cost one GET each on the sessions' kept-alive
    connections (a connection of their own is one more round trip per file on a far link),
    while a large body is still received on its own connection by the mover asked for."""
    root = tmp_path / "web"
    root.mkdir()
    files = {f"s{i:02d}.bin": os.urandom(4096) for i in range(12)}
    files["large.bin"] = os.urandom(2 << 20)
    for name, data in files.items():
        (root / name).write_bytes(data)
    server = FaultyWebServer(root)
    async with server.running():
        with caplog.at_level(logging.DEBUG, logger="pubmed_mirror"):
            report = await mirror(server.url, tmp_path / "m", opts(concurrency=2,
                                                                   splice=splice))
    assert report.ok, report.failed
    for name, data in files.items():
        assert (tmp_path / "m" / name).read_bytes() == data
    small = [(method, name, port) for _, method, name, port in server.stats.arrivals
             if name.startswith("s")]
    assert sorted(name for _, name, _ in small) == sorted(n for n in files if n[0] == "s")
    assert {method for method, _, _ in small} == {"GET"}
    assert len({port for _, _, port in small}) <= 2
    large = [r.message.rsplit("/", 1)[-1] for r in caplog.records
             if "large.bin: " in r.message and " bytes by " in r.message]
    assert large == [f"large.bin: {2 << 20} bytes by {'splice' if splice else 'recv'}"]


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_stall_times_out_and_resumes(web_tree: Tree, certificate: tuple[Path, Path],
                                           tmp_path: Path, scheme: str) -> None:
    """A body that goes silent is given up after the stall timeout and resumed."""
    server = _web(web_tree, scheme, certificate)
    server.add(BIG, WebFault("stall", after=500_000, seconds=4))
    async with server.running():
        with anyio.fail_after(20):
            report = await mirror(_source(server, certificate), tmp_path / "m", opts(
                include=(BIG,), timeouts=Timeouts(connect=5, stall=0.5)))
    assert report.ok and report.retries == 1, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == web_tree[1][BIG]
    assert server.stats.ranges[BIG] == [0, rest_at(500_000)]


async def test_a_web_servers_503s_still_spend_retries(web_tree: Tree, tmp_path: Path) -> None:
    """A web server (not an object store) answering 503 again and again: the pauses are
    waited out and each answer spends a retry, so the file fails after its attempts (a
    site down for maintenance fails the run in seconds, as before S3's SlowDown was made
    free of retries), the other files landing."""
    server = FaultyWebServer(web_tree[0])
    server.add(BIG, *(WebFault("503") for _ in range(6)))
    async with server.running():
        with anyio.fail_after(30):
            report = await mirror(server.url, tmp_path / "m", opts(
                retry=RetryPolicy(attempts=3, base=0.05, cap=0.2)))
    assert [f.name for f in report.failed] == [BIG]
    assert [s for n, s in server.stats.statuses if n == BIG] == [503, 503, 503]


async def test_429_retry_after_is_honoured(web_tree: Tree, tmp_path: Path) -> None:
    """A 429 with Retry-After: 1 is waited out (>= 1 s) and retried; a 503 without one is
    retried with the usual backoff."""
    server = FaultyWebServer(web_tree[0])
    server.add(BIG, WebFault("429", seconds=1), WebFault("503"))
    events: list[Any] = []
    async with server.running():
        start = anyio.current_time()
        report = await mirror(server.url, tmp_path / "m", opts(include=(BIG,)),
                              on_event=events.append)
        elapsed = anyio.current_time() - start
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == web_tree[1][BIG]
    assert [s for n, s in server.stats.statuses if n == BIG] == [429, 503, 200]
    assert sum(isinstance(e, FileRetrying) for e in events) == 2
    assert elapsed >= 1.0


@pytest.mark.parametrize("validators", [False, True], ids=["no-validators", "validators"])
async def test_a_200_to_a_range_is_not_appended(web_tree: Tree, tmp_path: Path,
                                                validators: bool) -> None:
    """The retry after an early close asks for a range and gets the whole file (200).
    Without a validator to name, on its own connection (then it asks again through
    aiohttp) and through aiohttp: the first bytes are skipped, not appended. With one (the
    request said If-Range), the 200 says the file changed: it starts again from 0. Either
    way the file is identical."""
    server = FaultyWebServer(web_tree[0], validators=validators)
    server.add(BIG, WebFault("close", after=1_000_000), WebFault("ignore_range"),
               WebFault("ignore_range"))
    async with server.running():
        report = await mirror(server.url, tmp_path / "m", opts(include=(BIG,)))
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == web_tree[1][BIG]
    assert [s for n, s in server.stats.statuses if n == BIG] == [200, 200, 200]
    assert server.stats.ranges[BIG] == [0, rest_at(1_000_000),
                                        0 if validators else rest_at(1_000_000)]


async def test_wrong_md5_leaves_no_file(web_tree: Tree, tmp_path: Path) -> None:
    (web_tree[0] / f"{BIG}.md5").write_text(f"MD5({BIG})= {'0' * 32}\n")
    server = FaultyWebServer(web_tree[0])
    async with server.running():
        report = await mirror(server.url, tmp_path / "m", opts(include=(BIG,)))
    assert [f.name for f in report.failed] == [BIG]
    assert not (tmp_path / "m" / BIG).exists()
    assert not part_path(tmp_path / "m" / BIG).exists()


async def test_hostile_names_are_skipped(web_tree: Tree, tmp_path: Path) -> None:
    """Listed names that leave the directory or hide control characters are skipped; the
    real files arrive; nothing is written outside DEST."""
    hostile = ["../evil.xml.gz", "a/b.xml.gz", "..", "bad\x1b[31m.xml.gz", ".pubmed-mirror"]
    server = FaultyWebServer(web_tree[0], extra_names=hostile)
    dest = tmp_path / "m"
    async with server.running():
        report = await mirror(server.url, dest, opts(include=("*.xml.gz",)))
    assert report.ok, report.failed
    assert sorted(f.name for f in report.done) == sorted(web_tree[1])
    assert not (tmp_path / "evil.xml.gz").exists()
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == sorted(
        [*web_tree[1], *(f"{n}.md5" for n in web_tree[1])])


# -- FTP, falling back to HTTPS ---------------------------------------------------------------


async def test_ftp_refused_falls_back_to_https(served: tuple[Path, dict[str, bytes]],
                                               certificate: tuple[Path, Path], tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The auto transport (the presets' default): the FTP port refuses, so the run goes
    over HTTPS (Apache, the test certificate trusted by option), says so once, and the
    mirror is complete and MD5-checked."""
    if reason := missing("apache"):
        pytest.skip(reason)
    base, files = served
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        ftp_port = closed.getsockname()[1]
    with apache(base, tls=certificate) as port:
        source = AutoSource(
            ftp=FtpSource(host="127.0.0.1", port=ftp_port, path="/pubmed/updatefiles/"),
            https=HttpSource(scheme="https", host="127.0.0.1", port=port,
                             path="/pubmed/updatefiles/", ca_file=certificate[0]))
        with caplog.at_level(logging.WARNING, logger="pubmed_mirror"):
            report = await mirror(source, tmp_path / "m", opts(concurrency=3))
    assert report.ok, report.failed
    for name, data in files.items():
        assert (tmp_path / "m" / name).read_bytes() == data
    assert sum(1 for f in report.done if f.md5) == sum(n.endswith(".xml.gz") for n in files)
    said = [r.message for r in caplog.records if "using HTTPS" in r.message]
    assert len(said) == 1 and "refused" in said[0]


def test_transport_option_is_for_presets(tmp_path: Path) -> None:
    done = run("mirror", "ftp://127.0.0.1/pub/", "--dest", str(tmp_path / "m"),
               "--transport", "https")
    assert done.returncode == 2 and "--transport is for the pubmed: presets" in done.stderr
    # (the presets name NCBI: parsed here, never connected to)
    https = parse_source("pubmed:updatefiles", transport="https")
    assert str(https) == "https://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/"
    auto = parse_source("pubmed:baseline")
    assert isinstance(auto, AutoSource) and auto.https.host == auto.ftp.host
    assert str(parse_source("pubmed:baseline", transport="ftp")).startswith("ftp://")
    assert auto.default_include == ("*.xml.gz",)


@pytest.mark.parametrize(("tls", "splice", "expected"), [
    (False, True, "splice"), (False, False, "recv"), (True, True, "recv")])
async def test_receive_path_by_scheme(served: tuple[Path, dict[str, bytes]],
                                      certificate: tuple[Path, Path], tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture, tls: bool,
                                      splice: bool, expected: str) -> None:
    """Plain HTTP bodies of 256 KiB and more are spliced into the part (after the headers,
    on a connection of their own) unless splice is off; HTTPS bodies of that size, on a
    connection of their own too, are decrypted into the part (recv_into), never spliced;
    smaller bodies of either are received into memory from the session's kept-alive
    connection."""
    if reason := missing("nginx"):
        pytest.skip(reason)
    base, files = served
    with nginx(base, tls=certificate if tls else None) as port:
        source = HttpSource.parse(
            f"{'https' if tls else 'http'}://127.0.0.1:{port}/pubmed/updatefiles/",
            ca_file=certificate[0] if tls else None)
        with caplog.at_level(logging.DEBUG, logger="pubmed_mirror"):
            report = await mirror(source, tmp_path / "m", opts(splice=splice))
    assert report.ok, report.failed
    for name, data in files.items():
        assert (tmp_path / "m" / name).read_bytes() == data
    paths = {(int(r.message.split(": ")[-1].split()[0]) >= 256 << 10,
              r.message.rsplit(" by ", 1)[1] if " by " in r.message else "memory")
             for r in caplog.records if " bytes by " in r.message
             or r.message.endswith(" bytes into memory")}
    assert paths == {(True, expected), (False, "memory")}


def test_ftp_runs_do_not_import_aiohttp() -> None:
    """aiohttp takes ~150 ms to import (measured here): the command and the FTP engine do
    not load it until an HTTP(S) source makes its transport."""
    code = ("import sys, pubmed_mirror, pubmed_mirror.cli; "
            "from pubmed_mirror._source import parse_source; "
            "parse_source('ftp://127.0.0.1/x/').transport(connect_timeout=1, stall_timeout=1); "
            "print('aiohttp' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


async def test_rate_cap_holds_over_http(web_tree: Tree, tmp_path: Path) -> None:
    """--rate-limit 2 MiB/s over 2 sessions: ~3.7 MB take at least (bytes - burst) / R."""
    server = FaultyWebServer(web_tree[0])
    total = sum(len(d) for d in web_tree[1].values())
    rate = 2 << 20
    async with server.running():
        start = anyio.current_time()
        report = await mirror(server.url, tmp_path / "m",
                              opts(concurrency=2, rate_limit=rate, include=("*.xml.gz",)))
        elapsed = anyio.current_time() - start
    assert report.ok, report.failed
    for name, data in web_tree[1].items():
        assert (tmp_path / "m" / name).read_bytes() == data
    assert (total - rate / 10) / rate * 0.97 <= elapsed <= total / rate * 2 + 2


async def test_a_long_listing_is_read_to_its_end(tmp_path: Path) -> None:
    """A listing of 3,000 files (~250 KB, many network reads) gives every entry."""
    root = tmp_path / "web"
    root.mkdir()
    for i in range(3000):
        (root / f"pubmed26n{i:04d}.xml.gz").write_bytes(b"x" * (i % 7))
    server = FaultyWebServer(root)
    async with server.running():
        entries = await list_remote(server.url)
    assert len(entries) == 3000
    assert {e.name: e.size for e in entries} == {
        f"pubmed26n{i:04d}.xml.gz": i % 7 for i in range(3000)}


async def test_a_failing_head_fails_that_file_only(web_tree: Tree, tmp_path: Path) -> None:
    """Rounded sizes are asked with HEAD; one that fails (404) does not spoil the listing:
    that file fails, the others arrive."""
    server = FaultyWebServer(web_tree[0], rounded=True, extra_names=["pubmed26n0009.xml.gz"])
    async with server.running():
        report = await mirror(server.url, tmp_path / "m", opts(include=("*.xml.gz",)))
    assert [f.name for f in report.failed] == ["pubmed26n0009.xml.gz"]
    assert sorted(f.name for f in report.done) == sorted(web_tree[1])
    for name, data in web_tree[1].items():
        assert (tmp_path / "m" / name).read_bytes() == data


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_body_comes_on_a_connection_of_its_own(web_tree: Tree,
                                                       certificate: tuple[Path, Path],
                                                       tmp_path: Path, scheme: str) -> None:
    """A data file's GET, over HTTPS as over plain HTTP, goes on a connection of its own,
    not on the pooled one that listed the directory (aiohttp's, whose buffers would copy
    the body): the file arrives byte for byte."""
    server = _web(web_tree, scheme, certificate)
    async with server.running():
        report = await mirror(_source(server, certificate), tmp_path / "m",
                              opts(include=(BIG,)))
    assert report.ok, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == web_tree[1][BIG]
    pooled = {port for _, _, name, port in server.stats.arrivals if name != BIG}
    body = [port for _, method, name, port in server.stats.arrivals
            if method == "GET" and name == BIG]
    assert len(body) == 1 and body[0] not in pooled, server.stats.arrivals


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_a_body_ends_at_its_length(web_tree: Tree, certificate: tuple[Path, Path],
                                         tmp_path: Path, scheme: str) -> None:
    """A server that keeps the connection open after the body (despite Connection: close)
    does not stall the transfer: the body ends at its Content-Length."""
    server = _web(web_tree, scheme, certificate)
    server.add(BIG, WebFault("linger", seconds=5))
    async with server.running():
        with anyio.fail_after(4):
            report = await mirror(_source(server, certificate), tmp_path / "m", opts(
                include=(BIG,), timeouts=Timeouts(connect=5, stall=1)))
    assert report.ok and report.retries == 0, report.failed
    assert (tmp_path / "m" / BIG).read_bytes() == web_tree[1][BIG]


def _write_version(folder: Path, tag: bytes, when: float) -> bytes:
    """pubmed26n0001.xml.gz of 100,000 bytes of `tag` and its NAME.md5, both dated `when`."""
    data = (tag * 100_000)[:100_000]
    name = folder / "pubmed26n0001.xml.gz"
    name.write_bytes(data)
    checksum = folder / "pubmed26n0001.xml.gz.md5"
    checksum.write_text(f"MD5(pubmed26n0001.xml.gz)= {hashlib.md5(data).hexdigest()}\n")
    for path in (name, checksum):
        path.chmod(0o644)
        os.utime(path, (when, when))
    return data


def test_a_file_rewritten_within_the_minute_it_was_fetched_in_is_fetched_again(
        tmp_path: Path) -> None:
    """nginx's index shows minutes. A file and its NAME.md5 fetched, then both rewritten at
    the same size within the same minute: every run after called them up to date, for ever
    (the listed minute held the recorded time). A record made before the listed minute was
    over is now checked (its NAME.md5 fetched again) while that minute and one more last: the
    new version lands, and the run after that fetches no file (at most its NAME.md5)."""
    if reason := missing("nginx"):
        pytest.skip(reason)
    while time.time() % 60 > 40:  # both versions in one minute, with time to spare
        time.sleep(1)
    docroot = Path(tempfile.mkdtemp(prefix="pm-minute-"))
    docroot.chmod(0o755)
    try:
        first = time.time()
        _write_version(docroot, b"A", first)
        dest = tmp_path / "m"
        with nginx(docroot) as port:
            url = f"http://127.0.0.1:{port}/"
            assert run("mirror", url, "--dest", str(dest)).returncode == 0
            new = _write_version(docroot, b"B", first + 3)
            second = run("mirror", url, "--dest", str(dest), "--json")
            third = run("mirror", url, "--dest", str(dest), "--json")
    finally:
        shutil.rmtree(docroot)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (dest / "pubmed26n0001.xml.gz").read_bytes() == new
    assert run("verify", str(dest)).returncode == 0
    done = json.loads(third.stdout.splitlines()[-1])
    assert third.returncode == 0 and done["bytes_received"] < 1000, third.stdout


def test_no_verify_keeps_a_kept_copys_own_checksum_file(tmp_path: Path) -> None:
    """--no-verify, a file and its NAME.md5 rewritten within the minute they were fetched
    in: the next run checks the copy (nothing to hash against under --no-verify: kept) and
    wrote the server's new NAME.md5 beside the old file, which `verify` then called
    corrupt. A copy kept keeps its own NAME.md5."""
    if reason := missing("nginx"):
        pytest.skip(reason)
    while time.time() % 60 > 40:
        time.sleep(1)
    docroot = Path(tempfile.mkdtemp(prefix="pm-minute-"))
    docroot.chmod(0o755)
    try:
        first = time.time()
        old = _write_version(docroot, b"A", first)
        dest = tmp_path / "m"
        with nginx(docroot) as port:
            url = f"http://127.0.0.1:{port}/"
            assert run("mirror", url, "--dest", str(dest), "--no-verify").returncode == 0
            _write_version(docroot, b"B", first + 3)
            second = run("mirror", url, "--dest", str(dest), "--no-verify")
    finally:
        shutil.rmtree(docroot)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (dest / "pubmed26n0001.xml.gz").read_bytes() == old
    assert hashlib.md5(old).hexdigest() in (dest / "pubmed26n0001.xml.gz.md5").read_text()
    assert run("verify", str(dest)).returncode == 0
