"""Per-file repair over the other protocol: a file FTP cannot deliver comes over HTTPS."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pubmed_mirror import FileDone, MirrorOptions, RetryPolicy, Timeouts, mirror
from pubmed_mirror._demo import make_pubmed_tree
from pubmed_mirror._source import AutoSource, FtpSource, HttpSource
from pubmed_mirror.testing import Fault, FaultPlan, FaultyFTPServer
from webservers import apache, missing, served_copy

DIRECTORY = "/pubmed/updatefiles/"


@pytest.fixture
def tree() -> Iterator[Path]:
    source = Path(tempfile.mkdtemp(prefix="pm-repair-src-"))
    try:
        make_pubmed_tree(source, files=4, target_bytes=300 << 10)
        with served_copy(source / "pubmed") as base:
            yield base
    finally:
        shutil.rmtree(source)



FAULTS = {"550": lambda: Fault(kind="reply", reply="550 No such file"),
          "corrupt": lambda: Fault(kind="corrupt", after_bytes=1000),
          "drop": lambda: Fault(kind="close_426", after_bytes=5000)}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_file_ftp_cannot_deliver_comes_over_https(
        tree: Path, certificate: tuple[Path, Path], tmp_path: Path, fault: str) -> None:
    """A file whose every FTP attempt fails (550, a corrupt copy, a drop) arrives over the
    HTTPS tree, MD5-checked, while the others come over FTP; the events say which."""
    if reason := missing("apache"):
        pytest.skip(reason)
    served = tree / DIRECTORY.strip("/")
    names = sorted(p.name for p in served.glob("*.xml.gz"))
    bad = names[1]
    plan = FaultPlan()
    plan.add(bad, *(FAULTS[fault]() for _ in range(20)))
    events: list[FileDone] = []
    with FaultyFTPServer(tree, faults=plan) as ftp, apache(tree, tls=certificate) as port:
        source = AutoSource(
            ftp=FtpSource(host="127.0.0.1", port=ftp.port, path=DIRECTORY),
            https=HttpSource(scheme="https", host="127.0.0.1", port=port, path=DIRECTORY,
                             ca_file=certificate[0]))
        report = await mirror(source, tmp_path / "m", MirrorOptions(
            retry=RetryPolicy(attempts=3, base=0.02, cap=0.1), timeouts=Timeouts(connect=5,
                                                                                stall=5)),
            on_event=lambda e: events.append(e) if isinstance(e, FileDone) else None)
    assert report.ok, report.failed
    for name in names:
        assert (tmp_path / "m" / name).read_bytes() == (served / name).read_bytes()
    via = {e.name: e.via for e in events if e.name.endswith(".xml.gz")}
    assert via == {n: "https" if n == bad else "ftp" for n in names}
    assert all(e.md5 for e in events if e.name.endswith(".xml.gz"))
    assert {f.name: f.via for f in report.done if f.name.endswith(".xml.gz")} == via
