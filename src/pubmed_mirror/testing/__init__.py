"""Test helpers, for your own tests too: a real FTP server that misbehaves on purpose, and a
PubMed-shaped tree to serve.

    from pubmed_mirror.testing import Fault, FaultyFTPServer, make_pubmed_tree

    make_pubmed_tree(root, directory="pubmed/baseline", year=2027, first=1, files=3)
    with FaultyFTPServer(root) as server:
        server.faults.add("pubmed27n0002.xml.gz", Fault(kind="reset", after_bytes=1000))
        ...  # mirror f"{server.url}pubmed/baseline/"

`FaultyFTPServer` (and its `Fault`, `FaultPlan`, `ServerStats`) needs pyftpdlib, the `test`
extra; `make_pubmed_tree` needs only the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._trees import make_pubmed_tree

if TYPE_CHECKING:
    from ._ftpd import Fault, FaultKind, FaultPlan, FaultyFTPServer, ServerStats

__all__ = ["Fault", "FaultKind", "FaultPlan", "FaultyFTPServer", "ServerStats",
           "make_pubmed_tree"]

_SERVER = frozenset(__all__) - {"make_pubmed_tree"}


def __getattr__(name: str) -> Any:
    # imported on first use: the demo imports the tree builder (through this package) on an
    # install without pyftpdlib
    if name in _SERVER:
        from . import _ftpd

        return getattr(_ftpd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
