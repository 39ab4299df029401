"""HTTP(S) through a forward proxy: the installed command against Apache (over TLS, and
plain) through a real tinyproxy started by the tests, counting what the proxy's log saw."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from forwardproxy import missing as proxy_missing
from forwardproxy import squid, tinyproxy
from pubmed_mirror import MirrorOptions, mirror
from pubmed_mirror._demo import make_pubmed_tree
from pubmed_mirror._source import AutoSource, FtpSource, HttpSource
from test_cli import command, free_port
from webservers import apache, missing, served_copy

DIRECTORY = "pubmed/updatefiles/"
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                   "ALL_PROXY", "no_proxy", "NO_PROXY")
SECRET = "s3cret-Pw"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Path, dict[str, bytes]]]:
    """Three PubMed-shaped files (~256 KiB each, with NAME.md5), readable by the servers."""
    source = Path(tempfile.mkdtemp(prefix="pm-proxy-src-"))
    try:
        make_pubmed_tree(source, files=3, target_bytes=256 << 10)
        files = {p.name: p.read_bytes() for p in (source / DIRECTORY).iterdir()}
        with served_copy(source / "pubmed") as base:
            yield base, files
    finally:
        shutil.rmtree(source)


@pytest.fixture(autouse=True)
def _servers_installed() -> None:
    for reason in (missing("apache"), proxy_missing()):
        if reason:
            pytest.skip(reason)


def run(*args: str, home: Path, **proxy_env: str) -> subprocess.CompletedProcess[str]:
    """The installed command with exactly `proxy_env` as its proxy variables, HOME at
    `home` (its ~/.netrc)."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARIABLES and k != "PUBMED_MIRROR_PASSWORD"}
    env.update(proxy_env, HOME=str(home))
    return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=60,
                          env=env, check=False)


def assert_mirrored(dest: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name


def data_files(files: dict[str, bytes]) -> list[str]:
    return sorted(n for n in files if n.endswith(".xml.gz"))


@pytest.mark.parametrize("how", ["https_proxy", "HTTPS_PROXY", "--proxy"])
def test_https_mirror_goes_through_the_proxy(served: tuple[Path, dict[str, bytes]],
                                             certificate: tuple[Path, Path],
                                             tmp_path: Path, how: str) -> None:
    """An https mirror named by https_proxy, HTTPS_PROXY or --proxy (which beats a dead
    https_proxy) reaches the server only through CONNECTs to it, byte for byte."""
    base, files = served
    with apache(base, tls=certificate) as port, tinyproxy() as proxy:
        url = f"https://127.0.0.1:{port}/{DIRECTORY}"
        flags = ["--proxy", proxy.url] if how == "--proxy" else []
        env = ({"https_proxy": f"http://127.0.0.1:{free_port()}"} if how == "--proxy"
               else {how: proxy.url})
        result = run("mirror", url, "--dest", str(tmp_path / "m"), "--ca-file",
                     str(certificate[0]), *flags, home=tmp_path, **env)
        seen = proxy.requests()
    assert result.returncode == 0, result.stderr
    assert_mirrored(tmp_path / "m", files)
    print(f"requests seen by the proxy ({how}): {len(seen)}")
    assert seen and all(r == ("CONNECT", f"127.0.0.1:{port}") for r in seen), seen


@pytest.mark.parametrize("mover", ["splice", "recv"])
def test_plain_http_mirror_goes_through_the_proxy(served: tuple[Path, dict[str, bytes]],
                                                  tmp_path: Path, mover: str) -> None:
    """A plain http mirror through http_proxy sends every request to the proxy in absolute
    form, each data file's GET included (the splice/recv receive path does not go around
    it)."""
    base, files = served
    with apache(base) as port, tinyproxy() as proxy:
        url = f"http://127.0.0.1:{port}/{DIRECTORY}"
        flags = ["--no-splice"] if mover == "recv" else []
        result = run("mirror", url, "--dest", str(tmp_path / "m"), *flags, home=tmp_path,
                     http_proxy=proxy.url)
        seen = proxy.requests()
    assert result.returncode == 0, result.stderr
    assert_mirrored(tmp_path / "m", files)
    print(f"requests seen by the proxy ({mover}): {len(seen)}")
    assert all(target.startswith(f"http://127.0.0.1:{port}/") for _, target in seen), seen
    fetched = {target.rsplit("/", 1)[-1] for method, target in seen if method == "GET"}
    assert set(data_files(files)) <= fetched


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "127.0.0.0/8", "example.org, 127.0.0.1"])
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_no_proxy_goes_straight_to_the_server(served: tuple[Path, dict[str, bytes]],
                                              certificate: tuple[Path, Path],
                                              tmp_path: Path, no_proxy: str,
                                              scheme: str) -> None:
    """A host NO_PROXY names is reached directly: the mirror completes and the proxy's log
    shows no request."""
    base, files = served
    tls = certificate if scheme == "https" else None
    with apache(base, tls=tls) as port, tinyproxy() as proxy:
        url = f"{scheme}://127.0.0.1:{port}/{DIRECTORY}"
        result = run("mirror", url, "--dest", str(tmp_path / "m"), "--ca-file",
                     str(certificate[0]), home=tmp_path, https_proxy=proxy.url,
                     http_proxy=proxy.url, NO_PROXY=no_proxy) if tls else run(
            "mirror", url, "--dest", str(tmp_path / "m"), home=tmp_path,
            https_proxy=proxy.url, http_proxy=proxy.url, NO_PROXY=no_proxy)
        seen = proxy.requests()
    assert result.returncode == 0, result.stderr
    assert_mirrored(tmp_path / "m", files)
    assert seen == []


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_proxy_demanding_credentials(served: tuple[Path, dict[str, bytes]],
                                     certificate: tuple[Path, Path], tmp_path: Path,
                                     scheme: str) -> None:
    """A proxy refusing for credentials stops the run at once: exit 1, one line, no
    password shown; with the credentials in the proxy URL of the environment, or in
    ~/.netrc for --proxy, the mirror completes through it and the password is never
    printed (even with -v). (tinyproxy answers a CONNECT 401, a request 407; its 407 to
    the HEAD that opens a plain http session carries a body, which aiohttp refuses as a
    malformed answer: its status is then read on a connection of our own.)"""
    base, files = served
    tls = certificate if scheme == "https" else None
    trust = ["--ca-file", str(certificate[0])] if tls else []
    variable = f"{scheme}_proxy"
    with apache(base, tls=tls) as port, tinyproxy(basic_auth=("alice", SECRET)) as proxy:
        url = f"{scheme}://127.0.0.1:{port}/{DIRECTORY}"
        refused = run("mirror", url, "--dest", str(tmp_path / "a"), *trust, home=tmp_path,
                      **{variable: proxy.url})
        wrong = run("mirror", url, "--dest", str(tmp_path / "b"), *trust, "-v",
                    home=tmp_path, **{variable: f"http://alice:wrong-{SECRET}@127.0.0.1:"
                                                f"{proxy.port}"})
        refusals = len(proxy.requests())
        from_env = run("mirror", url, "--dest", str(tmp_path / "c"), *trust, "-v",
                       home=tmp_path,
                       **{variable: f"http://alice:{SECRET}@127.0.0.1:{proxy.port}"})
        (tmp_path / ".netrc").write_text(f"machine 127.0.0.1 login alice password {SECRET}\n")
        (tmp_path / ".netrc").chmod(0o600)
        from_netrc = run("mirror", url, "--dest", str(tmp_path / "d"), *trust, "-v",
                         "--proxy", proxy.url, home=tmp_path)
        seen = proxy.requests()
    for failed in (refused, wrong):
        assert failed.returncode == 1, failed.stdout + failed.stderr
        lines = [line for line in failed.stderr.splitlines() if "error" in line.lower()]
        assert len(lines) == 1, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1 or "-v" in failed.args
        assert len(lines[0]) < 300, lines  # never the proxy's error page
        assert "proxy" in lines[0] and ("401" in lines[0] or "407" in lines[0]), lines
        assert SECRET not in failed.stdout + failed.stderr
    assert refusals <= 4, refusals  # no retries against a refusal
    for done, dest in ((from_env, "c"), (from_netrc, "d")):
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
        assert_mirrored(tmp_path / dest, files)
    print(f"requests seen by the proxy ({scheme}): {refusals} refused, "
          f"{len(seen) - refusals} for two complete mirrors")


@pytest.mark.parametrize("refusal", ["no credentials", "wrong credentials", "filtered"])
@pytest.mark.parametrize("scheme", ["https", "http"])
def test_refusing_proxy_stops_the_run_at_once(served: tuple[Path, dict[str, bytes]],
                                              certificate: tuple[Path, Path],
                                              tmp_path: Path, scheme: str,
                                              refusal: str) -> None:
    """A proxy that demands credentials (407, or 401 to a CONNECT) or refuses the server
    (403) ends the run after at most two requests to it: exit 1, one line naming the proxy
    and its answer, never the password, no file fetched."""
    base, _ = served
    tls = certificate if scheme == "https" else None
    trust = ["--ca-file", str(certificate[0])] if tls else []
    auth = None if refusal == "filtered" else ("alice", SECRET)
    with (apache(base, tls=tls) as port,
          tinyproxy(basic_auth=auth, refused_hosts=("127.0.0.1",) if not auth else ())
          as proxy):
        user = f"alice:wrong-{SECRET}@" if refusal == "wrong credentials" else ""
        result = run("mirror", f"{scheme}://127.0.0.1:{port}/{DIRECTORY}", "--dest",
                     str(tmp_path / "m"), *trust, home=tmp_path,
                     **{f"{scheme}_proxy": f"http://{user}127.0.0.1:{proxy.port}"})
        seen = proxy.requests()
    print(f"{scheme}, {refusal}: {len(seen)} requests seen by the proxy; {result.stderr}")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, result.stderr
    assert f"proxy http://127.0.0.1:{proxy.port}" in lines[0], lines
    answers = ("403",) if refusal == "filtered" else ("401", "407")
    assert any(answer in lines[0] for answer in answers), lines
    assert SECRET not in result.stdout + result.stderr
    assert 1 <= len(seen) <= 2, seen  # no retries against a refusal
    assert not list((tmp_path / "m").glob("*.xml.gz"))


def test_a_server_gone_for_a_moment_behind_the_proxy_is_retried(
        served: tuple[Path, dict[str, bytes]], certificate: tuple[Path, Path],
        tmp_path: Path) -> None:
    """Over https, the server going away for a moment mid-run (tinyproxy then answers
    CONNECT with its own 500 "Unable to connect") is retried as a refused connection is
    without a proxy, not taken for the proxy's refusal: the run completes."""
    base, files = served
    dest = tmp_path / "m"
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    with tinyproxy() as proxy:
        with apache(base, tls=certificate) as port:
            url = f"https://127.0.0.1:{port}/{DIRECTORY}"
            child = subprocess.Popen(
                [*command(), "mirror", url, "--dest", str(dest), "--ca-file",
                 str(certificate[0]), "--proxy", proxy.url, "--concurrency", "1",
                 "--rate-limit", "256K"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env=env)
            deadline = time.monotonic() + 30
            while not list(dest.glob("*.xml.gz")) and time.monotonic() < deadline:
                time.sleep(0.05)  # until the first file is final
        time.sleep(1)  # the server is gone: CONNECTs to it fail at the proxy
        with apache(base, tls=certificate, port=port):
            out, err = child.communicate(timeout=60)
    assert child.returncode == 0, out + err
    assert_mirrored(dest, files)
    assert "could not connect to the server" in out  # a retry said why


def test_a_caching_proxy_is_asked_for_the_servers_answers(tmp_path: Path) -> None:
    """Through a caching squid, a file replaced on the server (another size; times days old,
    so the cache would deem its copies of the listing and of the file fresh for hours)
    arrives in its new version: every request asks the cache to check with the server."""
    if reason := proxy_missing("squid"):
        pytest.skip(reason)
    name = "pubmed26n0001.xml.gz"
    old, new = os.urandom(100_000), os.urandom(120_000)
    root = tmp_path / "src"
    root.mkdir()
    dest = tmp_path / "m"

    def publish(directory: Path, data: bytes, days_ago: float) -> None:
        (directory / name).write_bytes(data)
        (directory / f"{name}.md5").write_text(
            f"MD5 ({name}) = {hashlib.md5(data).hexdigest()}\n")
        then = time.time() - days_ago * 86400
        for path in (directory / name, directory / f"{name}.md5", directory):
            os.utime(path, (then, then))

    publish(root, old, days_ago=10)
    with served_copy(root) as base, apache(base) as port, squid() as proxy:
        url = f"http://127.0.0.1:{port}/pubmed/"
        first = run("mirror", url, "--dest", str(dest), home=tmp_path, http_proxy=proxy.url)
        assert first.returncode == 0, first.stdout + first.stderr
        publish(base / "pubmed", new, days_ago=9)
        second = run("mirror", url, "--dest", str(dest), home=tmp_path,
                     http_proxy=proxy.url)
    assert second.returncode == 0, second.stdout + second.stderr
    assert (dest / name).read_bytes() == new


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_dead_proxy_is_one_line(served: tuple[Path, dict[str, bytes]],
                                certificate: tuple[Path, Path], tmp_path: Path,
                                scheme: str) -> None:
    """A proxy nothing listens on: exit 1 with one line naming the proxy, nothing written."""
    base, _ = served
    tls = certificate if scheme == "https" else None
    trust = ["--ca-file", str(certificate[0])] if tls else []
    dead = free_port()
    with apache(base, tls=tls) as port:
        url = f"{scheme}://127.0.0.1:{port}/{DIRECTORY}"
        result = run("mirror", url, "--dest", str(tmp_path / "m"), *trust,
                     "--proxy", f"http://127.0.0.1:{dead}", home=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "proxy" in result.stderr and str(dead) in result.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("bad", ["127.0.0.1:3128", "https://127.0.0.1:3128",
                                 "socks5://127.0.0.1:1080", "http://", "http://h:99999",
                                 "http://h:3128/path", "http://h:3128?x=1",
                                 f"http://alice:{SECRET}@127.0.0.1:3128"])
def test_malformed_proxy_is_bad_usage(tmp_path: Path, bad: str) -> None:
    """A --proxy that is not http://host[:port] (or carries a password) is exit 2 with one
    error line, before any connection, the password never shown."""
    with tinyproxy() as proxy:
        result = run("mirror", f"http://127.0.0.1:{proxy.port}/{DIRECTORY}", "--dest",
                     str(tmp_path / "m"), "--proxy", bad, home=tmp_path)
        seen = proxy.requests()
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "proxy" in errors[0], result.stderr
    assert SECRET not in result.stderr
    assert seen == []


async def test_auto_goes_to_https_through_the_proxy(served: tuple[Path, dict[str, bytes]],
                                                    certificate: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """With FTP unreachable, an FTP-or-HTTPS source goes to HTTPS through its proxy: the
    files arrive and the proxy saw the CONNECTs."""
    from pubmed_mirror._proxy import Proxy

    base, files = served
    with apache(base, tls=certificate) as port, tinyproxy() as proxy:
        source = AutoSource(
            ftp=FtpSource(host="127.0.0.1", port=free_port(), path=f"/{DIRECTORY}"),
            https=HttpSource(scheme="https", host="127.0.0.1", port=port,
                             path=f"/{DIRECTORY}", ca_file=certificate[0],
                             proxy=Proxy(host="127.0.0.1", port=proxy.port)))
        report = await mirror(source, tmp_path / "m", MirrorOptions(concurrency=2))
        seen = proxy.requests()
    assert not report.failed, report
    assert_mirrored(tmp_path / "m", files)
    assert seen and all(r == ("CONNECT", f"127.0.0.1:{port}") for r in seen), seen


@pytest.mark.parametrize(("host", "port", "no_proxy", "expected"), [
    ("ftp.ncbi.nlm.nih.gov", 443, "nih.gov", True),
    ("ftp.ncbi.nlm.nih.gov", 443, ".nih.gov", True),
    ("ftp.ncbi.nlm.nih.gov", 443, "NIH.GOV.", True),
    ("ftp.ncbi.nlm.nih.gov", 443, "h.gov", False),
    ("nih.gov", 443, "nih.gov", True),
    ("ftp.ncbi.nlm.nih.gov", 443, "nih.gov:443", True),
    ("ftp.ncbi.nlm.nih.gov", 443, "nih.gov:8443", False),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("10.1.2.3", 80, "11.0.0.0/8 other.org", False),
    ("::1", 80, "::1", True),
    ("::1", 80, "[::1]:80", True),
    ("example.org", 80, "*", True),
    ("example.org", 80, "*.org", False),
    ("example.org", 80, "", False),
])
def test_no_proxy_rules(host: str, port: int, no_proxy: str, expected: bool) -> None:
    """NO_PROXY matches as curl's: names and the names below them, addresses and CIDR
    networks, `*` alone for all; an entry's port narrows it to that port."""
    from pubmed_mirror._proxy import bypassed

    assert bypassed(host, port, no_proxy) is expected


def test_repr_and_errors_hide_the_password() -> None:
    """A proxy's password appears in neither its repr nor the transport's nor a source's."""
    from pubmed_mirror._proxy import Proxy

    proxy = Proxy(host="127.0.0.1", port=3128, user="alice", password=SECRET)
    source = HttpSource(scheme="https", host="127.0.0.1", port=443, proxy=proxy)
    transport = source.transport(connect_timeout=1, stall_timeout=1)
    for text in (repr(proxy), str(proxy), repr(source), str(source), repr(transport)):
        assert SECRET not in text, text
    assert "alice" in repr(proxy)


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_connects_cancelled_at_random_points_leave_nothing_open(
        served: tuple[Path, dict[str, bytes]], certificate: tuple[Path, Path],
        scheme: str) -> None:
    """Sessions opened through the proxy and cancelled at random points of the connect
    (TCP, CONNECT, TLS, the opening HEAD) leave no transport or socket unclosed."""
    import asyncio
    import gc
    import random
    import ssl
    import warnings

    from pubmed_mirror._http import HttpTransport
    from pubmed_mirror._proxy import Proxy

    base, _ = served
    tls = certificate if scheme == "https" else None
    context = ssl.create_default_context(cafile=str(certificate[0])) if tls else None
    rng = random.Random(407)
    opened = 0
    with (apache(base, tls=tls) as port, tinyproxy() as proxy,
          warnings.catch_warnings(record=True) as caught):
        warnings.simplefilter("always")
        transport = HttpTransport(scheme=scheme, host="127.0.0.1", port=port,
                                  probe=f"/{DIRECTORY}", ssl_context=context,
                                  proxy=Proxy(host="127.0.0.1", port=proxy.port))
        for _ in range(150):
            task = asyncio.create_task(transport.connect())
            await asyncio.sleep(rng.uniform(0, 0.04))
            task.cancel()
            try:
                session = await task
            except asyncio.CancelledError:
                continue
            opened += 1
            await session.aclose()
        await asyncio.sleep(0.1)
        gc.collect()
    print(f"{scheme}: {opened} of 150 connects completed before their cancel")
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == []
    assert opened < 150  # most were cancelled part way
