"""FaultyFTPServer really misbehaves as documented, seen through the stdlib ftplib client."""

from __future__ import annotations

import ftplib
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubmed_mirror.testing import Fault, FaultPlan, FaultyFTPServer

SIZE = 300_000
Files = dict[str, bytes]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    rng = random.Random(1234)
    content = {"a.bin": rng.randbytes(SIZE), "b.bin": rng.randbytes(SIZE), "empty.bin": b""}
    for name, data in content.items():
        (tmp_path / name).write_bytes(data)
    return content


@pytest.fixture
def server(tmp_path: Path, files: Files) -> Iterator[FaultyFTPServer]:
    with FaultyFTPServer(tmp_path) as running:
        yield running


def connect(server: FaultyFTPServer, user: str = "anonymous", password: str = "") -> ftplib.FTP:
    """A logged-in client; the caller closes it (`with`)."""
    ftp = ftplib.FTP(timeout=10)
    try:
        ftp.connect(server.host, server.port)
        ftp.login(user, password)
    except BaseException:
        ftp.close()
        raise
    return ftp


def fetch(ftp: ftplib.FTP, name: str, rest: int | None = None) -> bytes:
    received = bytearray()
    ftp.retrbinary(f"RETR {name}", received.extend, rest=rest)
    return bytes(received)


def fetch_failing(ftp: ftplib.FTP, name: str, error: type[BaseException] | tuple[
        type[BaseException], ...], match: str | None = None) -> bytes:
    """RETR that must end in `error`; returns what arrived before it."""
    received = bytearray()
    with pytest.raises(error, match=match):
        ftp.retrbinary(f"RETR {name}", received.extend)
    return bytes(received)


def read_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        assert chunk, "data connection closed early"
        data += chunk
    return bytes(data)


def read_to_eof(conn: socket.socket) -> bytes:
    data = bytearray()
    while chunk := conn.recv(65536):
        data += chunk
    return bytes(data)


# -- normal service ----------------------------------------------------------------------------


def test_plain_retr_is_byte_identical(server: FaultyFTPServer, files: Files) -> None:
    """A RETR without faults delivers the file byte for byte and is counted in the stats."""
    with connect(server) as ftp:
        assert fetch(ftp, "a.bin") == files["a.bin"]
        assert fetch(ftp, "empty.bin") == b""
    stats = server.stats
    assert stats.retr == {"a.bin": 1, "empty.bin": 1}
    assert stats.rest_offsets == {"a.bin": [0], "empty.bin": [0]}
    assert stats.bytes_sent == {"a.bin": SIZE, "empty.bin": 0}
    assert server.url == f"ftp://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("offset", [1, 123_456, SIZE])
def test_rest_offset_is_served_and_recorded(server: FaultyFTPServer, files: Files,
                                            offset: int) -> None:
    """RETR after REST n sends the file from byte n and records n as that RETR's offset."""
    with connect(server) as ftp:
        assert fetch(ftp, "a.bin", rest=offset) == files["a.bin"][offset:]
    assert server.stats.rest_offsets["a.bin"] == [offset]
    assert server.stats.bytes_sent["a.bin"] == SIZE - offset


# -- data faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [0, 1, 65_535, 65_536, 65_537, 200_001, SIZE])
def test_close_426_sends_exactly_after_bytes_then_426(server: FaultyFTPServer, files: Files,
                                                      after: int) -> None:
    """close_426 closes the data connection after exactly after_bytes bytes and replies 426."""
    server.faults.add("a.bin", Fault(kind="close_426", after_bytes=after))
    with connect(server) as ftp:
        got = fetch_failing(ftp, "a.bin", ftplib.error_temp, match="^426 ")
        assert got == files["a.bin"][:after]
        assert fetch(ftp, "a.bin") == files["a.bin"]  # the session is still usable
    assert server.stats.bytes_sent["a.bin"] == after + SIZE


@pytest.mark.parametrize("after", [0, 1, 65_536, 200_001])
def test_close_226_truncates_silently(server: FaultyFTPServer, files: Files, after: int) -> None:
    """close_226 sends exactly after_bytes bytes and then claims success with 226."""
    server.faults.add("a.bin", Fault(kind="close_226", after_bytes=after))
    with connect(server) as ftp:
        received = bytearray()
        reply = ftp.retrbinary("RETR a.bin", received.extend)
    assert reply.startswith("226 ") and bytes(received) == files["a.bin"][:after]


def test_fault_counts_from_the_rest_offset(server: FaultyFTPServer, files: Files) -> None:
    """after_bytes counts the bytes of this RETR, starting at its REST offset."""
    server.faults.add("a.bin", Fault(kind="close_226", after_bytes=10_000))
    with connect(server) as ftp:
        assert fetch(ftp, "a.bin", rest=50_000) == files["a.bin"][50_000:60_000]
    assert server.stats.rest_offsets["a.bin"] == [50_000]
    assert server.stats.bytes_sent["a.bin"] == 10_000


def test_fault_after_the_last_byte_fires_instead_of_226(server: FaultyFTPServer,
                                                        files: Files) -> None:
    """A fault at the file's end (even an empty remainder) replaces the normal 226."""
    server.faults.add("empty.bin", Fault(kind="close_426"))
    server.faults.add("a.bin", Fault(kind="close_426"))
    with connect(server) as ftp:
        assert fetch_failing(ftp, "empty.bin", ftplib.error_temp, match="^426 ") == b""
        ftp.sendcmd("TYPE I")
        ftp.sendcmd(f"REST {SIZE}")
        assert fetch_failing(ftp, "a.bin", ftplib.error_temp, match="^426 ") == b""


@pytest.mark.parametrize("after", [0, 100_000])
def test_reset_gives_connection_reset_then_426(server: FaultyFTPServer, files: Files,
                                               after: int) -> None:
    """reset aborts the data connection with RST (ECONNRESET, at most after_bytes) and 426."""
    server.faults.add("a.bin", Fault(kind="reset", after_bytes=after))
    with connect(server) as ftp:
        got = fetch_failing(ftp, "a.bin", ConnectionResetError)
        assert got == files["a.bin"][: len(got)] and len(got) <= after
        with pytest.raises(ftplib.error_temp, match="^426 "):
            ftp.voidresp()
    assert server.stats.bytes_sent["a.bin"] == after


def test_stall_pauses_one_transfer_only(server: FaultyFTPServer, files: Files) -> None:
    """stall sends nothing for stall_seconds, keeps the connection open, serves others meanwhile,
    then carries on."""
    server.faults.add("a.bin", Fault(kind="stall", after_bytes=1000, stall_seconds=2.0))
    with connect(server) as ftp, connect(server) as other:
        ftp.voidcmd("TYPE I")
        with ftp.transfercmd("RETR a.bin") as conn:
            head = read_exactly(conn, 1000)
            stalled_at = time.monotonic()
            assert fetch(other, "b.bin") == files["b.bin"]
            assert time.monotonic() - stalled_at < 1.0
            conn.settimeout(1.0)
            with pytest.raises(TimeoutError):
                conn.recv(1)
            conn.settimeout(10)
            rest = read_to_eof(conn)
        assert ftp.voidresp().startswith("226 ")
    assert time.monotonic() - stalled_at >= 1.9
    assert head + rest == files["a.bin"]


@pytest.mark.parametrize("after", [0, 50_000])
def test_kill_control_closes_both_connections(server: FaultyFTPServer, files: Files,
                                              after: int) -> None:
    """kill_control closes the data connection after after_bytes and the control one, no reply."""
    server.faults.add("a.bin", Fault(kind="kill_control", after_bytes=after))
    with connect(server) as ftp:
        got = fetch_failing(ftp, "a.bin", (EOFError, ConnectionError))
    assert got == files["a.bin"][:after]
    with connect(server) as ftp:
        assert fetch(ftp, "a.bin") == files["a.bin"]


# -- injected replies --------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "error"), [("450 Busy", ftplib.error_temp),
                                              ("421 Too busy", ftplib.error_temp),
                                              ("550 No such file", ftplib.error_perm)])
def test_reply_fault_answers_retr_once(server: FaultyFTPServer, files: Files, reply: str,
                                       error: type[Exception]) -> None:
    """A reply fault answers one RETR verbatim with no data; the next RETR is served."""
    server.faults.add("a.bin", Fault(kind="reply", reply=reply))
    with connect(server) as ftp:
        assert fetch_failing(ftp, "a.bin", error, match=f"^{reply}$") == b""
        assert server.faults.pending("a.bin") == 0
        assert fetch(ftp, "a.bin") == files["a.bin"]
    assert server.stats.retr["a.bin"] == 2
    assert server.stats.bytes_sent["a.bin"] == SIZE


def test_reply_fault_closes_the_open_data_connection(server: FaultyFTPServer) -> None:
    """After an injected reply the server closes the data connection the client had opened."""
    server.faults.add("a.bin", Fault(kind="reply", reply="550 No such file"))
    with connect(server) as ftp:
        host, port = ftp.makepasv()
        with socket.create_connection((host, port), timeout=10) as conn:
            with pytest.raises(ftplib.error_perm, match="^550 "):
                ftp.sendcmd("RETR a.bin")
            try:
                assert conn.recv(1) == b""
            except ConnectionResetError:
                pass  # closed before it was even accepted: just as gone
        ftp.voidcmd("NOOP")


def test_fault_plan_is_a_fifo_per_file(server: FaultyFTPServer, files: Files) -> None:
    """Faults queued for a file apply to its next RETRs in order; other files are untouched."""
    server.faults.add("a.bin", Fault(kind="close_226", after_bytes=10),
                      Fault(kind="close_226", after_bytes=20))
    assert server.faults.pending("a.bin") == 2 and server.faults.pending("b.bin") == 0
    with connect(server) as ftp:
        assert fetch(ftp, "b.bin") == files["b.bin"]
        assert fetch(ftp, "a.bin") == files["a.bin"][:10]
        assert fetch(ftp, "a.bin") == files["a.bin"][:20]
        assert fetch(ftp, "a.bin") == files["a.bin"]
    assert server.faults.pending("a.bin") == 0


def test_fault_values_are_validated() -> None:
    """Fault rejects unknown kinds, negative sizes and replies that are not one FTP line."""
    for bad in ({"kind": "explode"}, {"kind": "stall", "after_bytes": -1},
                {"kind": "reply", "reply": "busy"}, {"kind": "reply", "reply": "450 a\r\n226 b"}):
        with pytest.raises(ValueError):
            Fault(**bad)


def test_shared_fault_plan_is_used(tmp_path: Path, files: Files) -> None:
    """A FaultPlan passed in is the one the server consumes, keyed by base name."""
    plan = FaultPlan()
    plan.add("/some/dir/a.bin", Fault(kind="close_226", after_bytes=5))
    with FaultyFTPServer(tmp_path, faults=plan) as server, connect(server) as ftp:
        assert server.faults is plan
        assert fetch(ftp, "a.bin") == files["a.bin"][:5]
    assert plan.pending("a.bin") == 0


# -- connections, logins, commands -------------------------------------------------------------


def test_connection_limit_421_at_greeting(tmp_path: Path, files: Files) -> None:
    """Over max_connections with limit_reply '421', the greeting is 421 and it counts as refused."""
    with FaultyFTPServer(tmp_path, max_connections=2) as server:
        with connect(server), connect(server):
            with ftplib.FTP(timeout=10) as third:
                with pytest.raises(ftplib.error_temp, match="^421 Too many connections"):
                    third.connect(server.host, server.port)
        stats = server.stats
    assert (stats.connections, stats.refused, stats.logins, stats.max_concurrent) == (3, 1, 2, 2)


def test_connection_limit_530_at_login(tmp_path: Path, files: Files) -> None:
    """Over max_connections with limit_reply '530', the greeting is fine but PASS gets 530."""
    with FaultyFTPServer(tmp_path, max_connections=2, limit_reply="530") as server:
        with connect(server), connect(server):
            with ftplib.FTP(timeout=10) as third:
                assert third.connect(server.host, server.port).startswith("220")
                with pytest.raises(ftplib.error_perm, match="^530 .*too many"):
                    third.login()
        stats = server.stats
    assert (stats.connections, stats.refused, stats.logins, stats.max_concurrent) == (3, 1, 2, 2)


def test_stats_count_logins_peaks_and_commands(server: FaultyFTPServer) -> None:
    """Stats count connections, logins (USER+PASS = 2 commands each) and the concurrency peak."""
    with connect(server), connect(server), connect(server):
        stats = server.stats
    assert (stats.connections, stats.logins, stats.max_concurrent) == (3, 3, 3)
    assert stats.commands == 6 and stats.refused == 0
    stats.retr["x"] = 1
    assert server.stats.retr == {}  # a snapshot, not the live object


def test_user_mode_refuses_anonymous(tmp_path: Path, files: Files) -> None:
    """With user/password set, anonymous and wrong passwords get 530 and the user gets in."""
    with FaultyFTPServer(tmp_path, user="alice", password="secret") as server:
        with ftplib.FTP(timeout=10) as ftp:
            ftp.connect(server.host, server.port)
            with pytest.raises(ftplib.error_perm, match="^530 Login incorrect"):
                ftp.login()
            with pytest.raises(ftplib.error_perm, match="^530 Login incorrect"):
                ftp.login("alice", "wrong")
        with connect(server, "alice", "secret") as ftp:
            assert fetch(ftp, "b.bin") == files["b.bin"]
        assert server.stats.logins == 1


def test_disable_mlsd_forces_list(tmp_path: Path, files: Files) -> None:
    """With disable_mlsd, MLSD and MLST answer 500 while LIST still lists the files."""
    with FaultyFTPServer(tmp_path, disable_mlsd=True) as server, connect(server) as ftp:
        with pytest.raises(ftplib.error_perm, match="^500 "):
            list(ftp.mlsd())
        with pytest.raises(ftplib.error_perm, match="^500 "):
            ftp.sendcmd("MLST a.bin")
        lines: list[str] = []
        ftp.retrlines("LIST", lines.append)
        assert sum(name in line for line in lines for name in files) == len(files)
        assert "MLST" not in ftp.sendcmd("FEAT")


def test_mlsd_works_by_default(server: FaultyFTPServer, files: Files) -> None:
    """Without disable_mlsd, MLSD lists every file with its exact size."""
    with connect(server) as ftp:
        sizes = {name: int(facts["size"]) for name, facts in ftp.mlsd() if facts["type"] == "file"}
    assert sizes == {name: len(data) for name, data in files.items()}


# -- lifecycle ---------------------------------------------------------------------------------


def test_restart_keeps_the_port_and_drops_connections(server: FaultyFTPServer,
                                                      files: Files) -> None:
    """restart() drops every connection and serves again on the same port."""
    port = server.port
    with connect(server) as old:
        server.restart()
        assert server.port == port
        with pytest.raises((EOFError, ConnectionError)):
            old.voidcmd("NOOP")
    with connect(server) as ftp:
        assert fetch(ftp, "a.bin") == files["a.bin"]
    assert server.stats.connections == 2


def test_stop_closes_stalled_transfers(tmp_path: Path, files: Files) -> None:
    """stop() closes control and data connections even mid-stall, promptly and idempotently."""
    server = FaultyFTPServer(tmp_path)
    server.start()
    server.faults.add("a.bin", Fault(kind="stall", after_bytes=10))
    with connect(server) as ftp:
        ftp.voidcmd("TYPE I")
        with ftp.transfercmd("RETR a.bin") as conn:
            assert read_exactly(conn, 10) == files["a.bin"][:10]
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 2.0
            assert read_to_eof(conn) == b""
        with pytest.raises((EOFError, ConnectionError)):
            ftp.voidresp()
    server.stop()
    assert "stopped" in repr(server)


# -- latency and throughput --------------------------------------------------------------------


def test_reply_delay_delays_every_reply(tmp_path: Path, files: Files) -> None:
    """reply_delay holds back each control reply (greeting included) by at least that long."""
    delay = 0.2
    with FaultyFTPServer(tmp_path, reply_delay=delay) as server:
        ftp = ftplib.FTP(timeout=10)
        try:
            started = time.monotonic()
            ftp.connect(server.host, server.port)
            assert time.monotonic() - started >= delay
            ftp.login()
            started = time.monotonic()
            ftp.voidcmd("NOOP")
            assert time.monotonic() - started >= delay
            assert fetch(ftp, "a.bin") == files["a.bin"]
            assert ftp.quit().startswith("221")  # the close waits for the delayed goodbye
        finally:
            ftp.close()


def test_rate_per_connection_throttles(tmp_path: Path, files: Files) -> None:
    """rate_per_connection caps each data connection: 300 kB at 200 kB/s takes about 1.5 s."""
    rate = 200_000
    with FaultyFTPServer(tmp_path, rate_per_connection=rate) as server, connect(server) as ftp:
        started = time.monotonic()
        assert fetch(ftp, "a.bin") == files["a.bin"]
        elapsed = time.monotonic() - started
    assert elapsed >= 0.9 * SIZE / rate


def test_passive_ports_are_honoured(tmp_path: Path, files: Files) -> None:
    """With passive_ports, PASV offers a port from that range."""
    ports = range(61_000, 61_020)  # above Linux's ephemeral range, so normally free
    with FaultyFTPServer(tmp_path, passive_ports=ports) as server, connect(server) as ftp:
        assert ftp.makepasv()[1] in ports
        assert fetch(ftp, "b.bin") == files["b.bin"]


def test_options_are_validated(tmp_path: Path) -> None:
    """Impossible options are refused at construction, before anything listens."""
    with pytest.raises(ValueError):
        FaultyFTPServer(tmp_path, user="alice")
    with pytest.raises(ValueError):
        FaultyFTPServer(tmp_path, limit_reply="550")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaultyFTPServer(tmp_path, rate_per_connection=-1)


@pytest.mark.parametrize("at", [0, 1, 65_536, SIZE - 1])
def test_corrupt_inverts_one_byte_and_says_226(server: FaultyFTPServer, files: Files,
                                               at: int) -> None:
    """A corrupt fault delivers the full size with exactly the byte at `at` inverted, once."""
    server.faults.add("a.bin", Fault(kind="corrupt", after_bytes=at))
    with connect(server) as ftp:
        first = fetch(ftp, "a.bin")
        second = fetch(ftp, "a.bin")
    expected = bytearray(files["a.bin"])
    expected[at] ^= 0xFF
    assert first == bytes(expected)
    assert second == files["a.bin"]


def test_reset_connections_drops_the_first_ones(tmp_path: Path, files: Files) -> None:
    """The first N control connections are reset before any greeting; the next one works."""
    with FaultyFTPServer(tmp_path, reset_connections=2) as server:
        for _ in range(2):
            with pytest.raises((ConnectionError, EOFError, ftplib.Error)):
                connect(server)
        with connect(server) as ftp:
            assert fetch(ftp, "b.bin") == files["b.bin"]
        assert server.stats.connections == 3 and server.stats.logins == 1
