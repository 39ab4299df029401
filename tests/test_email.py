"""Etiquette toward the server: `--email` / $PUBMED_MIRROR_EMAIL as the anonymous FTP password
and in the User-Agent, refused in one line when it is not an address, and never shown."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
from pathlib import Path

import anyio
import pytest

import pubmed_mirror
from conftest import assert_mirrored
from pubmed_mirror import FtpSource, HttpSource, parse_source
from pubmed_mirror.testing import FaultyFTPServer
from test_cli import command
from webfaults import FaultyWebServer

Tree = tuple[Path, dict[str, bytes]]
ADDRESS = "curator.7f3a@example.org"
AGENT = f"pubmed-mirror/{pubmed_mirror.__version__}"


def run(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The installed command, with HOME (so ~/.netrc) and the email and password variables
    as given, none inherited."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("PUBMED_MIRROR_PASSWORD", "PUBMED_MIRROR_EMAIL")}
    return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=60,
                          env={**base, "HOME": str(home), **env}, check=False)


@pytest.mark.parametrize("given", ["flag", "env", "none", "empty"])
@pytest.mark.parametrize("verb", ["mirror", "ls"])
def test_email_is_the_anonymous_password(ftpd: FaultyFTPServer, tree: Tree, tmp_path: Path,
                                         given: str, verb: str) -> None:
    """Every anonymous login sends the address from --email or $PUBMED_MIRROR_EMAIL as its
    password (`anonymous@` without either, or with the variable empty), and the address is
    printed nowhere, even with -v."""
    dest = tmp_path / "m"
    args = [verb, ftpd.url, "-v", *(["--dest", str(dest)] if verb == "mirror" else [])]
    if given == "flag":
        result = run(*args, "--email", ADDRESS, home=tmp_path)
    else:
        value = {"env": ADDRESS, "empty": ""}.get(given)
        result = run(*args, home=tmp_path,
                     **({"PUBMED_MIRROR_EMAIL": value} if value is not None else {}))
    assert result.returncode == 0, result.stderr
    if verb == "mirror":
        assert_mirrored(dest, tree[1])
    stats = ftpd.stats
    assert stats.logins >= 1
    expected = ADDRESS if given in ("flag", "env") else "anonymous@"
    assert stats.anonymous_passwords == [expected] * stats.logins
    assert ADDRESS not in result.stdout + result.stderr


def test_flag_wins_over_the_variable(ftpd: FaultyFTPServer, tree: Tree, tmp_path: Path) -> None:
    """--email is sent rather than $PUBMED_MIRROR_EMAIL when both are given."""
    result = run("ls", ftpd.url, "--email", ADDRESS, home=tmp_path,
                 PUBMED_MIRROR_EMAIL="other@example.org")
    assert result.returncode == 0, result.stderr
    assert ftpd.stats.anonymous_passwords == [ADDRESS]


def test_a_given_password_is_not_replaced(tree: Tree, tmp_path: Path) -> None:
    """With a password from $PUBMED_MIRROR_PASSWORD (anonymous user) or ~/.netrc (a named
    user) the email is not sent: those logins use their password."""
    with FaultyFTPServer(tree[0]) as anonymous:
        result = run("ls", anonymous.url, "--email", ADDRESS, home=tmp_path,
                     PUBMED_MIRROR_PASSWORD="given-pw")
        assert result.returncode == 0, result.stderr
        assert anonymous.stats.anonymous_passwords == ["given-pw"]
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login bob password hunter2\n")
    netrc.chmod(0o600)
    with FaultyFTPServer(tree[0], user="bob", password="hunter2") as named:
        result = run("ls", named.url, "--email", ADDRESS, home=tmp_path)
        assert result.returncode == 0, result.stderr
        assert named.stats.logins == 1 and named.stats.anonymous_passwords == []


BAD = ["no-at-sign.example.org", "two@at@example.org", "@example.org", "curator@",
       "cu rator@example.org", "curator@exa\tmple.org", "curator@example.org\x1b[2J",
       "cura(tor)@example.org", ""]


@pytest.mark.parametrize(("given", "bad"), [("flag", bad) for bad in BAD]
                         + [("env", bad) for bad in BAD if bad])  # an empty variable is unset
@pytest.mark.parametrize("verb", ["mirror", "ls"])
def test_a_bad_email_exits_2_before_any_connection(tmp_path: Path, bad: str, given: str,
                                                   verb: str) -> None:
    """An --email or $PUBMED_MIRROR_EMAIL that is not an address is one error line naming
    where it came from, exit 2, with no connection made."""
    with socket.socket() as listener:  # a server that would notice any connection
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"ftp://127.0.0.1:{listener.getsockname()[1]}/"
        args = [verb, url, "--connect-timeout", "2", "--retries", "0",
                *(["--dest", str(tmp_path / "m")] if verb == "mirror" else [])]
        if given == "flag":
            result = run(*args, f"--email={bad}", home=tmp_path)
        else:
            result = run(*args, home=tmp_path, PUBMED_MIRROR_EMAIL=bad)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    where = "--email" if given == "flag" else "$PUBMED_MIRROR_EMAIL"
    assert where in lines[0] and "not an e-mail address" in lines[0]
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("splice", [True, False])
async def test_user_agent_names_the_version_and_the_email(tree: Tree, tmp_path: Path,
                                                          splice: bool) -> None:
    """Every HTTP request (index, HEAD, aiohttp and spliced GETs) carries User-Agent
    `pubmed-mirror/VERSION`, with `(+mailto:ADDR)` when an email is given."""
    server = FaultyWebServer(tree[0])
    flags = [] if splice else ["--no-splice"]
    async with server.running():
        for n, email in enumerate([None, ADDRESS]):
            agents_before = len(server.stats.user_agents)
            extra = [] if email is None else ["--email", email]
            result = await anyio.to_thread.run_sync(functools.partial(
                run, "mirror", server.url, "--dest", str(tmp_path / f"m{n}"), *flags, *extra,
                home=tmp_path))
            assert result.returncode == 0, result.stderr
            assert_mirrored(tmp_path / f"m{n}", tree[1])
            seen = set(server.stats.user_agents[agents_before:])
            assert seen == {AGENT if email is None else f"{AGENT} (+mailto:{email})"}


def test_library_email_route_hides_the_address(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_source(url, email=...) makes the anonymous password and the HTTPS User-Agent's
    address of a preset, shown by no repr or str; a bad one is a ValueError."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PUBMED_MIRROR_PASSWORD", raising=False)
    auto = parse_source("pubmed:updatefiles", email=ADDRESS)
    ftp, https = auto.ftp, auto.https  # type: ignore[union-attr]
    assert isinstance(ftp, FtpSource) and isinstance(https, HttpSource)
    assert ftp.password == ADDRESS and https.email == ADDRESS
    transport = auto.transport(connect_timeout=1, stall_timeout=1)
    shown = [repr(auto), str(auto), repr(ftp), repr(https), repr(transport),
             repr(transport.ftp), repr(transport.https)]
    assert not any(ADDRESS in text for text in shown)
    assert transport.https.user_agent == f"{AGENT} (+mailto:{ADDRESS})"
    with pytest.raises(ValueError, match="not an e-mail address"):
        parse_source("ftp://127.0.0.1/", email="nobody")
