"""s3:// against a second S3-compatible server: s3rver (Node.js, `.ci/install-s3rver`), on
127.0.0.1. Its listings are in a namespace of their own (`http://doc.s3.amazonaws.com/...`,
not S3's) and ignore `encoding-type=url`: the keys come as they are. The installed command
mirrors a PMC-shaped tree from it, verifies it, transfers nothing the second time, and then
fetches the changed object alone and deletes the deleted key."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from test_s3 import assert_files, run
from webservers import _wait, free_port, stop_process

S3RVER = Path(os.environ.get("S3RVER_DIR", "/opt/s3rver")) / "node_modules" / ".bin" / "s3rver"
BUCKET = "pmc-like"
TREE = {
    "PMC13901.1/PMC13901.1.xml": b"<article>one</article>\n" * 300,
    "PMC13901.1/PMC13901.1.txt": b"one\n",
    "PMC13901.1/bcr 272-1.jpg": os.urandom(70_000),  # a space, kept as it is
    "PMC13901.2/PMC13901.2.xml": b"<article>two</article>\n",
    "metadata/PMC13901.1.json": b'{"pmcid": "PMC13901"}',
    "odd/\u00fcn\u00efcode+plus.txt": b"u\n",  # unencoded: `+` must stay a plus
    "README.txt": b"readme\n",
}


def _client(endpoint: str) -> Any:
    """botocore with s3rver's own (fixed) credentials: it checks signatures."""
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="S3RVER", aws_secret_access_key="S3RVER")


@pytest.fixture(scope="module")
def s3rver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """s3rver on a free port, serving the bucket BUCKET filled with TREE; its URL."""
    if not S3RVER.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run s3rver: {S3RVER} is missing (.ci/install-s3rver)")
        pytest.skip(f"s3rver is not installed ({S3RVER}; .ci/install-s3rver installs it)")
    port = free_port()
    server = subprocess.Popen(
        [str(S3RVER), "-d", str(tmp_path_factory.mktemp("s3rver")), "-a", "127.0.0.1",
         "-p", str(port), "--configure-bucket", BUCKET, "--silent"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait(port, server, Path(os.devnull), what="s3rver", timeout=30)
        url = f"http://127.0.0.1:{port}"
        client = _client(url)
        for key, body in TREE.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=body)
        yield url
    finally:
        stop_process(server)


def test_s3rver_tree_mirrored_verified_then_incremental(s3rver: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    source = (f"s3://{BUCKET}/", "--s3-endpoint", s3rver, "--dest", str(dest))
    first = run("mirror", *source, "--json")
    assert first.returncode == 0, first.stderr
    assert_files(dest, TREE)
    assert '"done": 7' in first.stdout.splitlines()[-1]
    verified = run("verify", str(dest))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "7 match their MD5" in verified.stdout

    again = run("mirror", *source, "--json")
    assert again.returncode == 0, again.stderr
    summary = again.stdout.splitlines()[-1]
    assert '"done": 0' in summary and '"skipped": 7' in summary

    # a prefix without its last `/` is the same directory (not the keys beginning with it)
    one = tmp_path / "one"
    single = run("mirror", f"s3://{BUCKET}/PMC13901.1", "--s3-endpoint", s3rver, "--dest",
                 str(one))
    assert single.returncode == 0, single.stderr
    assert_files(one, {k.removeprefix("PMC13901.1/"): v for k, v in TREE.items()
                       if k.startswith("PMC13901.1/")})

    client = _client(s3rver)
    changed = "PMC13901.1/PMC13901.1.txt"
    client.put_object(Bucket=BUCKET, Key=changed, Body=b"one, corrected\n")
    client.delete_object(Bucket=BUCKET, Key="README.txt")
    try:
        third = run("mirror", *source, "--delete", "--max-delete", "100%", "--json")
        assert third.returncode == 0, third.stderr
        done = [line for line in third.stdout.splitlines() if '"file_done"' in line]
        assert len(done) == 1 and changed in done[0]
        assert '"file_deleted", "name": "README.txt"' in third.stdout
        want = {k: v for k, v in TREE.items() if k != "README.txt"}
        assert_files(dest, {**want, changed: b"one, corrected\n"})
    finally:  # the module's bucket as it was, for any later test
        client.put_object(Bucket=BUCKET, Key=changed, Body=TREE[changed])
        client.put_object(Bucket=BUCKET, Key="README.txt", Body=TREE["README.txt"])
