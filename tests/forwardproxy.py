"""Real forward proxies for the tests, from Debian, started in the foreground on 127.0.0.1
with a configuration of their own: tinyproxy, whose log (LogLevel Info, on stdout) holds one
`Request (file descriptor N): METHOD TARGET HTTP/1.1` line per request it received; and
squid, the caching proxy of many an institution, keeping answers in memory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from webservers import _wait, free_port, stop_process

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
SQUID = shutil.which("squid") or "/usr/sbin/squid"
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


def missing(proxy: str = "tinyproxy") -> str | None:
    """Why `proxy` ("tinyproxy" or "squid") cannot run here, or None; under CI (`CI` set)
    its absence fails the test instead: CI must run them all."""
    if Path(SQUID if proxy == "squid" else TINYPROXY).is_file():
        return None
    reason = f"{proxy} is not installed (.ci/install-proxy installs it)"
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"CI must run the proxy tests: {reason}")
    return reason


@dataclass
class RunningProxy:
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy received so far."""
        time.sleep(0.2)  # its log is written as it goes: let the last line land
        return _REQUEST.findall(self.log.read_text(errors="replace"))


@contextmanager
def tinyproxy(*, basic_auth: tuple[str, str] | None = None,
              refused_hosts: tuple[str, ...] = ()) -> Iterator[RunningProxy]:
    """tinyproxy on 127.0.0.1:PORT, demanding `basic_auth` (user, password) when given (407
    without it), refusing the destinations `refused_hosts` (a `Filter` rule: 403
    "Filtered", to a CONNECT as to a request)."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-proxy-"))
    run.chmod(0o755)  # its filter file is read by tinyproxy's unprivileged user
    conf = [f"Port {port}", "Listen 127.0.0.1", "Timeout 60", "LogLevel Info",
            "MaxClients 64", "Allow 127.0.0.1", "User nobody", "Group nogroup",
            "DisableViaHeader Yes"]
    if basic_auth:
        conf.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    if refused_hosts:
        (run / "filter").write_text("".join(f"^{host}$\n" for host in refused_hosts))
        conf += [f'Filter "{run / "filter"}"', "FilterDefaultDeny No"]
    (run / "tinyproxy.conf").write_text("\n".join(conf) + "\n")
    log = run / "tinyproxy.log"
    with log.open("wb") as out:
        server = subprocess.Popen([TINYPROXY, "-d", "-c", str(run / "tinyproxy.conf")],
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(port, server, log)
        yield RunningProxy(port, log)
    finally:
        stop_process(server)
        shutil.rmtree(run, ignore_errors=True)


@contextmanager
def squid() -> Iterator[RunningProxy]:
    """squid on 127.0.0.1:PORT, caching answers in memory as it would by default (fresh
    by its own reckoning for a fifth of a file's age when the server gives no expiry);
    `log` is its access log."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-squid-"))
    if os.geteuid() == 0:  # it runs as `proxy` then, and writes its logs as that user
        shutil.chown(run, "proxy", "proxy")
    conf = [f"http_port 127.0.0.1:{port}", f"pid_filename {run}/squid.pid",
            f"cache_log {run}/cache.log", f"access_log stdio:{run}/access.log squid",
            f"coredump_dir {run}", "cache_mem 64 MB", "maximum_object_size_in_memory 16 MB",
            "acl local src 127.0.0.0/8", "http_access allow local", "http_access deny all",
            "shutdown_lifetime 1 seconds", "visible_hostname pm-test"]
    (run / "squid.conf").write_text("\n".join(conf) + "\n")
    server = subprocess.Popen([SQUID, "-N", "-f", str(run / "squid.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(port, server, run / "cache.log", what="squid")
        yield RunningProxy(port, run / "access.log")
    finally:
        stop_process(server)
        shutil.rmtree(run, ignore_errors=True)
