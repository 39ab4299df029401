"""`--fallback URL`: an FTP directory with an HTTP(S) copy of it beside it, the installed
command against FaultyFTPServer (faults in the server) and the real Apache (over TLS)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forwardproxy import missing as proxy_missing
from forwardproxy import tinyproxy
from pubmed_mirror import AutoSource, BadSource, HttpSource, parse_source
from pubmed_mirror.testing import Fault, FaultPlan, FaultyFTPServer, make_pubmed_tree
from test_cli import command, free_port
from webservers import apache, missing, served_copy

DIRECTORY = "/pubmed/updatefiles/"
FAULTS = {"550": lambda: Fault(kind="reply", reply="550 No such file"),
          "corrupt": lambda: Fault(kind="corrupt", after_bytes=1000),
          "drop": lambda: Fault(kind="close_426", after_bytes=5000)}


@pytest.fixture
def tree() -> Iterator[Path]:
    """Four PubMed-shaped files of ~300 KiB with their NAME.md5, readable by Apache."""
    source = Path(tempfile.mkdtemp(prefix="pm-fallback-src-"))
    try:
        make_pubmed_tree(source, files=4, target_bytes=300 << 10)
        with served_copy(source / "pubmed") as base:
            yield base
    finally:
        shutil.rmtree(source)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed command, with no proxy or password from this environment."""
    env = {k: v for k, v in os.environ.items()
           if "proxy" not in k.lower() and not k.startswith("PUBMED_MIRROR_")}
    return subprocess.run([*command(), *args], capture_output=True, text=True, timeout=55,
                          env=env, check=False)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def requested(log: Path) -> list[tuple[str, str]]:
    """(method, path) of each request Apache logged (written once answered)."""
    time.sleep(0.2)
    lines = log.read_text().splitlines() if log.exists() else []
    return [(m, p) for m, p, _ in (line.split(" ") for line in lines)]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_file_ftp_cannot_deliver_arrives_over_the_fallback(
        tree: Path, certificate: tuple[Path, Path], tmp_path: Path, fault: str) -> None:
    """A file whose every FTP attempt fails (550, a corrupt copy, a drop) arrives over the
    --fallback HTTPS tree, MD5-checked, the others over FTP; Apache sees only that file's
    requests (and its NAME.md5's); the events and the JSON summary say what came over what."""
    if reason := missing("apache"):
        pytest.skip(reason)
    served = tree / DIRECTORY.strip("/")
    names = sorted(p.name for p in served.glob("*.xml.gz"))
    bad = names[1]
    plan = FaultPlan()
    plan.add(bad, *(FAULTS[fault]() for _ in range(20)))
    log, dest = tmp_path / "access.log", tmp_path / "m"
    with FaultyFTPServer(tree, faults=plan) as ftp, \
            apache(tree, tls=certificate, access_log=log) as port:
        result = run("mirror", f"{ftp.url.rstrip('/')}{DIRECTORY}", "--dest", str(dest),
                     "--fallback", f"https://127.0.0.1:{port}{DIRECTORY}",
                     "--ca-file", str(certificate[0]), "--include", "*.xml.gz",
                     "--retries", "2", "--json")
        seen = requested(log)
        ftp_retrs = ftp.stats.retr
    assert result.returncode == 0, result.stderr
    for name in names:
        assert (dest / name).read_bytes() == (served / name).read_bytes()
    events = json_lines(result.stdout)
    done = {e["name"]: e for e in events if e["event"] == "file_done"}
    assert {n: done[n]["via"] for n in names} == {n: "https" if n == bad else "ftp"
                                                 for n in names}
    assert all(done[n]["md5"] for n in names)
    # the session's probe of the directory, then that file's NAME.md5 and the file itself
    assert sorted(seen) == sorted([("HEAD", DIRECTORY), ("GET", f"{DIRECTORY}{bad}.md5"),
                                   ("GET", DIRECTORY + bad)]), seen
    # FTP first: a 550 at once, the others after their retries (a drop's first attempt
    # gets further than none before it, which renews the budget once)
    assert ftp_retrs[bad] == {"550": 1, "corrupt": 3, "drop": 4}[fault]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["ok"]
    assert summary["via"] == {"ftp": len(done) - 1, "https": 1}
    assert summary["repaired"] == [bad]


def test_the_summary_says_files_per_protocol_and_names_the_repaired(
        tree: Path, certificate: tuple[Path, Path], tmp_path: Path) -> None:
    """Without --json, the repaired file's line and the closing summary say it came over
    HTTPS, and the summary counts the files that came over each protocol."""
    if reason := missing("apache"):
        pytest.skip(reason)
    names = sorted(p.name for p in (tree / DIRECTORY.strip("/")).glob("*.xml.gz"))
    bad = names[2]
    plan = FaultPlan()
    plan.add(bad, *(FAULTS["550"]() for _ in range(5)))
    with FaultyFTPServer(tree, faults=plan) as ftp, apache(tree, tls=certificate) as port:
        result = run("mirror", f"{ftp.url.rstrip('/')}{DIRECTORY}", "--dest",
                     str(tmp_path / "m"), "--fallback", f"https://127.0.0.1:{port}{DIRECTORY}",
                     "--ca-file", str(certificate[0]), "--retries", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    repaired = [line for line in lines if line.startswith(f"done    {bad} ")]
    assert len(repaired) == 1 and "over https" in repaired[0], lines
    assert not any("over https" in line for line in lines
                   if line.startswith("done ") and line not in repaired)
    # 4 files (each with its NAME.md5), README.txt and a stats page, all but `bad` over FTP
    assert re.search(r"│ fetched over\s+│ ftp 5, https 1\s+│", result.stdout), result.stdout
    assert re.search(rf"│ repaired over https\s+│ {re.escape(bad)}\s+│", result.stdout)


def test_the_fallback_goes_through_the_proxy(tree: Path, certificate: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    """A file repaired over an https --fallback reaches it only through --proxy (CONNECTs),
    while FTP goes straight to its server."""
    for reason in (missing("apache"), proxy_missing()):
        if reason:
            pytest.skip(reason)
    names = sorted(p.name for p in (tree / DIRECTORY.strip("/")).glob("*.xml.gz"))
    plan = FaultPlan()
    plan.add(names[0], FAULTS["550"]())
    with FaultyFTPServer(tree, faults=plan) as ftp, apache(tree, tls=certificate) as port, \
            tinyproxy() as proxy:
        result = run("mirror", f"{ftp.url.rstrip('/')}{DIRECTORY}", "--dest",
                     str(tmp_path / "m"), "--fallback", f"https://127.0.0.1:{port}{DIRECTORY}",
                     "--ca-file", str(certificate[0]), "--proxy", proxy.url,
                     "--include", "*.xml.gz", "--json")
        seen = proxy.requests()
    assert result.returncode == 0, result.stderr
    assert json_lines(result.stdout)[-1]["repaired"] == [names[0]]
    assert seen and all(r == ("CONNECT", f"127.0.0.1:{port}") for r in seen), seen


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_ftp_down_at_the_start_runs_over_the_fallback(
        tree: Path, certificate: tuple[Path, Path], tmp_path: Path, scheme: str) -> None:
    """When FTP refuses the first connection, the whole run goes over the --fallback tree
    (https or plain http), said once on stderr; every file says so and none is "repaired"."""
    if reason := missing("apache"):
        pytest.skip(reason)
    tls = certificate if scheme == "https" else None
    dest = tmp_path / "m"
    with apache(tree, tls=tls) as port:
        result = run("mirror", f"ftp://127.0.0.1:{free_port()}{DIRECTORY}", "--dest", str(dest),
                     "--fallback", f"{scheme}://127.0.0.1:{port}{DIRECTORY}",
                     "--ca-file", str(certificate[0]), "--include", "*.xml.gz", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("for this run") == 1, result.stderr
    assert f"using {scheme.upper()} " in result.stderr
    events = json_lines(result.stdout)
    done = [e for e in events if e["event"] == "file_done"]
    assert len(done) == 4 and {e["via"] for e in done} == {scheme}
    assert all(e["md5"] for e in done if e["name"].endswith(".xml.gz"))
    assert events[-1]["via"] == {scheme: 4} and events[-1]["repaired"] == []
    served = tree / DIRECTORY.strip("/")
    for e in done:
        assert (dest / e["name"]).read_bytes() == (served / e["name"]).read_bytes()


def test_ls_lists_over_the_fallback_when_ftp_is_down(tree: Path, tmp_path: Path) -> None:
    """`ls` with --fallback lists the directory over the fallback when FTP refuses."""
    if reason := missing("apache"):
        pytest.skip(reason)
    with apache(tree) as port:
        result = run("ls", f"ftp://127.0.0.1:{free_port()}{DIRECTORY}",
                     "--fallback", f"http://127.0.0.1:{port}{DIRECTORY}", "--json")
    assert result.returncode == 0, result.stderr
    names = {e["name"] for e in json_lines(result.stdout)}
    assert names == {p.name for p in (tree / DIRECTORY.strip("/")).iterdir()}


BAD_FALLBACKS = {
    "a user name": "https://someone@127.0.0.1/pubmed/",
    "a password": "https://someone:s3cret@127.0.0.1/pubmed/",
    "ftp": "ftp://127.0.0.1/pubmed/",
    "no scheme": "127.0.0.1/pubmed/",
    "a bad port": "https://127.0.0.1:99999/pubmed/",
    "no host": "https:///pubmed/",
    "a query": "https://127.0.0.1/pubmed/?x=1",
    "a fragment": "https://127.0.0.1/pubmed/#x",
}


@pytest.mark.parametrize("what", sorted(BAD_FALLBACKS))
def test_a_bad_fallback_is_one_line_and_exit_2_before_any_connection(
        tmp_path: Path, what: str) -> None:
    """A malformed --fallback, one not http(s), or one with a user or password in it is
    refused in one line (never quoting a password) with exit 2, and FTP sees no connection."""
    with FaultyFTPServer(tmp_path) as ftp:
        result = run("mirror", ftp.url, "--dest", str(tmp_path / "m"),
                     "--fallback", BAD_FALLBACKS[what])
        connections = ftp.stats.connections
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "--fallback" in result.stderr, result.stderr
    assert "s3cret" not in result.stderr
    assert connections == 0
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("args", [
    ("https://127.0.0.1/pubmed/",),
    ("http://127.0.0.1/pubmed/",),
    ("pubmed:updatefiles", "--transport", "ftp"),
], ids=["https source", "http source", "transport ftp"])
def test_a_fallback_nothing_would_use_is_refused(tmp_path: Path, args: tuple[str, ...]) -> None:
    """--fallback beside an http(s) source or --transport ftp is bad usage: exit 2, one line."""
    result = run("mirror", *args, "--dest", str(tmp_path / "m"),
                 "--fallback", "https://127.0.0.1/pubmed/")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "--fallback" in result.stderr, result.stderr


def test_parse_source_takes_a_fallback_and_it_replaces_a_presets_https_tree() -> None:
    """parse_source(..., fallback=URL) makes FTP with that tree beside it, for a URL or a
    preset (in place of NCBI's HTTPS tree); over transport="https" the fallback alone."""
    url = "https://mirror.example:8443/pubmed/updatefiles/"
    source = parse_source("ftp://127.0.0.1/pubmed/updatefiles/", fallback=url)
    assert isinstance(source, AutoSource) and str(source.https) == url
    preset = parse_source("pubmed:updatefiles", fallback=url, email="me@example.org")
    assert isinstance(preset, AutoSource) and str(preset.https) == url
    assert preset.https.default_include == preset.ftp.default_include == ("*.xml.gz",)
    assert preset.https.email == "me@example.org"
    alone = parse_source("pubmed:updatefiles", fallback=url, transport="https")
    assert isinstance(alone, HttpSource) and str(alone) == url
    with pytest.raises(BadSource):
        parse_source("pubmed:updatefiles", fallback=url, transport="ftp")
    with pytest.raises(BadSource):
        parse_source("https://127.0.0.1/pubmed/", fallback=url)
