"""What a run loads before it does anything: each transport's client library only when the
run uses it, rich's progress bars only on a terminal (start-up is most of a small run's
time: benchmarks/results/RESULTS-h.md)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pubmed_mirror
from webservers import missing, nginx, served_copy

# runs the command in this interpreter, then says which of the modules it loaded
_PROBE = ("import sys\n"
          "from pubmed_mirror.cli import main\n"
          "code = main(sys.argv[1:])\n"
          "print('loaded:', sorted(m for m in ('aioftp', 'rich.progress') if m in sys.modules))\n"
          "sys.exit(code)\n")


def test_an_http_run_loads_neither_the_ftp_client_nor_progress_bars(tmp_path: Path) -> None:
    """A mirror over HTTP without a terminal imports neither aioftp nor rich.progress."""
    if reason := missing("nginx"):
        pytest.skip(reason)
    data = os.urandom(50_000)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "pubmed26n0001.xml.gz").write_bytes(data)
    (tmp_path / "src" / "pubmed26n0001.xml.gz.md5").write_text(
        f"MD5 (pubmed26n0001.xml.gz) = {hashlib.md5(data).hexdigest()}\n")
    dest = tmp_path / "dest"
    with served_copy(tmp_path / "src") as base, nginx(base) as port:
        out = subprocess.run([sys.executable, "-c", _PROBE, "mirror",
                              f"http://127.0.0.1:{port}/pubmed/", "--dest", str(dest), "-q"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == "loaded: []"
    assert (dest / "pubmed26n0001.xml.gz").read_bytes() == data


def test_the_ftp_classes_are_still_the_packages_own() -> None:
    """Imported when first asked for, they are the FTP transport's classes."""
    from pubmed_mirror import _ftp

    assert pubmed_mirror.FtpTransport is _ftp.FtpTransport
    assert pubmed_mirror.FtpSession is _ftp.FtpSession
    assert {"FtpSession", "FtpTransport"} <= set(pubmed_mirror.__all__)
    with pytest.raises(AttributeError, match="no attribute 'FtpClient'"):
        pubmed_mirror.FtpClient  # noqa: B018
