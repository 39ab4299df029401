"""The FTP servers people run -- vsftpd, proftpd, pure-ftpd -- started on 127.0.0.1 for tests.

Each serves one directory anonymously and read-only, with passive ports in a private range
and an optional per-IP connection limit. The binaries come from Debian's packages; as the
three conflict with one another, `.ci/install-ftpds` installs proftpd with apt and unpacks
the other two into FTPD_CACHE. Where a binary is missing the tests skip, except under CI
(`CI` set), where they fail: CI must run all three.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

FTPD_CACHE = Path(os.environ.get("PUBMED_MIRROR_FTPD_CACHE", "/var/cache/pubmed-mirror/ftpd"))
SERVERS = ("vsftpd", "proftpd", "pure-ftpd")
ANONYMOUS_HOME = Path("/srv/ftp")  # the `ftp` user's home: where pure-ftpd serves anonymous users


@dataclass(frozen=True)
class Running:
    name: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"ftp://127.0.0.1:{self.port}/"


def binary(name: str) -> str:
    """The server's executable; skip (fail under CI) when it is not installed."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin",
                            str(FTPD_CACHE / "usr" / "sbin")])
    found = shutil.which(name, path=path)
    if found is None:
        unavailable(f"{name} is not installed (run .ci/install-ftpds as root)")
    assert found is not None
    return found


def unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run every real server: {reason}")
    pytest.skip(reason)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def passive_range(count: int = 16) -> tuple[int, int]:
    """A block of free ports for the server's passive data connections, above the range
    outgoing connections take their ports from where there is room: after many runs, most
    of that range is held by closed connections in TIME_WAIT, which a server cannot bind."""
    _, top = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    start, end = (top + 1, 65_535) if top + 1 < 65_535 - 1_000 else (40_000, 60_000)
    for _ in range(100):
        low = random.randrange(start, end - count)
        if all(_free(p) for p in range(low, low + count)):
            return low, low + count - 1
    raise RuntimeError("no free block of passive ports")


def _vsftpd(root: Path, work: Path, port: int, limit: int) -> list[str]:
    low, high = passive_range()
    empty = work / "empty"
    empty.mkdir(mode=0o755)
    conf = work / "vsftpd.conf"
    conf.write_text("\n".join([
        "listen=YES", "listen_ipv6=NO", "listen_address=127.0.0.1", f"listen_port={port}",
        "background=NO", "anonymous_enable=YES", "local_enable=NO", "write_enable=NO",
        f"anon_root={root}", "no_anon_password=YES", "ftp_username=ftp", "pasv_enable=YES",
        f"pasv_min_port={low}", f"pasv_max_port={high}", "pasv_address=127.0.0.1",
        "seccomp_sandbox=NO", f"secure_chroot_dir={empty}", f"max_per_ip={limit}",
        "xferlog_enable=NO", "use_localtime=NO", ""]))
    return [binary("vsftpd"), str(conf)]


def _proftpd(root: Path, work: Path, port: int, limit: int) -> list[str]:
    low, high = passive_range()
    conf = work / "proftpd.conf"
    too_many = (f'MaxClientsPerHost {limit} "Sorry, the maximum number of clients (%m) from '
                'your host are already connected."' if limit else "")
    conf.write_text(f"""
ServerName "pubmed-mirror test"
ServerType standalone
DefaultServer on
Port {port}
DefaultAddress 127.0.0.1
SocketBindTight on
UseIPv6 off
User nobody
Group nogroup
PidFile {work}/proftpd.pid
ScoreboardFile {work}/proftpd.scoreboard
DelayTable {work}/proftpd.delay
WtmpLog off
UseReverseDNS off
TransferLog none
PassivePorts {low} {high}
{too_many}
<Anonymous {root}>
  User ftp
  Group nogroup
  UserAlias anonymous ftp
  RequireValidShell off
  <Limit WRITE>
    DenyAll
  </Limit>
</Anonymous>
""")
    return [binary("proftpd"), "-n", "-q", "-c", str(conf)]


def _pure_ftpd(root: Path, work: Path, port: int, limit: int) -> list[str]:
    # anonymous users get the `ftp` user's home and nothing else: give the server a private
    # mount namespace in which our tree is bind-mounted there
    low, high = passive_range()
    exe = binary("pure-ftpd")
    if os.geteuid() != 0:
        unavailable("pure-ftpd needs root here (a mount namespace for its anonymous home)")
    if not ANONYMOUS_HOME.is_dir():
        unavailable(f"{ANONYMOUS_HOME} (the ftp user's home) does not exist")
    script = f'mount --bind "$1" {ANONYMOUS_HOME} && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(root), exe,
            "-S", f"127.0.0.1,{port}", "-p", f"{low}:{high}", "-P", "127.0.0.1", "-e", "-i",
            "-H", "-A", "-c", "50", "-C", str(limit or 50)]


_COMMANDS: dict[str, Callable[[Path, Path, int, int], list[str]]] = {
    "vsftpd": _vsftpd, "proftpd": _proftpd, "pure-ftpd": _pure_ftpd}


def _wait_for_greeting(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:  # installed but broken (a config error): a failure
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(64).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no 220 greeting on port {port}: {log.read_text()[-500:]}")


@contextmanager
def real_server(name: str, root: Path, work: Path, *, limit: int = 0) -> Iterator[Running]:
    """Serve `root` with the named server; `limit` caps connections per client IP (0: none)."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = _COMMANDS[name](root, work, port, limit)
    log = work / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_greeting(port, proc, log)
        yield Running(name, port, log)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The server and every child it forked for a connection (all in its session)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=5)
