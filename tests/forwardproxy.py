"""A real forward proxy for the tests: tinyproxy from Debian, started in the foreground on
127.0.0.1 with a configuration of its own; its log (LogLevel Info, on stdout) holds one
`Request (file descriptor N): METHOD TARGET HTTP/1.1` line per request it received."""

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
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


def missing() -> str | None:
    """Why tinyproxy cannot run here, or None; under CI (`CI` set) its absence fails the
    test instead: CI must run them all."""
    if Path(TINYPROXY).is_file():
        return None
    reason = "tinyproxy is not installed (.ci/install-proxy installs it)"
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
