"""Real web servers for the tests: Apache httpd (mod_autoindex) and nginx (autoindex) from
Debian, started on 127.0.0.1 with a configuration of their own, optionally over TLS with a
self-signed certificate made with openssl at test time.

They run as root and serve as an unprivileged user: the served tree lives in a directory
of mode 0755 outside pytest's private temporary directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APACHE = shutil.which("apache2") or "/usr/sbin/apache2"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LIGHTTPD = shutil.which("lighttpd") or "/usr/sbin/lighttpd"
MINI_HTTPD = shutil.which("mini_httpd") or "/usr/sbin/mini_httpd"
MODULES = Path("/usr/lib/apache2/modules")


def missing(server: str) -> str | None:
    """Why `server` ("apache", "nginx", "lighttpd", "mini_httpd"; "python", Python's own
    http.server, is always there) cannot run here, or None; under CI (`CI` set) a missing
    server fails the test instead: CI must run them all."""
    binary = {"apache": APACHE, "nginx": NGINX, "lighttpd": LIGHTTPD,
              "mini_httpd": MINI_HTTPD, "python": sys.executable}[server]
    if Path(binary).is_file() and shutil.which("openssl"):
        return None
    reason = f"{server} or openssl is not installed (.ci/install-webservers installs them)"
    import pytest  # (the benchmarks use this module without pytest)

    if os.environ.get("CI"):
        pytest.fail(f"CI must run every web server: {reason}")
    return reason


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    key.chmod(0o644)
    return cert, key


@contextmanager
def served_copy(root: Path) -> Iterator[Path]:
    """`root` copied into a directory the servers' unprivileged workers can read."""
    base = Path(tempfile.mkdtemp(prefix="pm-web-"))
    try:
        base.chmod(0o755)
        shutil.copytree(root, base / "pubmed")
        for path in [base / "pubmed", *(base / "pubmed").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def apache(docroot: Path, *, style: str = "table", tls: tuple[Path, Path] | None = None,
           gzip_encoding: bool = False, access_log: Path | None = None,
           port: int | None = None) -> Iterator[int]:
    """Apache on 127.0.0.1:PORT serving `docroot` with autoindex; `style` "table" (Debian's
    default: FancyIndexing HTMLTable), "pre" (FancyIndexing, as NCBI's pages), "untimed"
    (FancyIndexing without the time column: exact sizes below 1 KiB, no times) or "plain".
    `gzip_encoding`: `AddEncoding x-gzip .gz` (commented out in Debian's mime.conf): .gz
    files are answered with `Content-Encoding: x-gzip`, their bytes as they are.
    `access_log`: a file that gets a line `METHOD PATH STATUS` per request answered.
    `port`: that one (a server started again where it was), else a free one."""
    port = port or free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-apache-"))
    options = {"table": "FancyIndexing HTMLTable NameWidth=* Charset=UTF-8",
               "pre": "FancyIndexing NameWidth=* Charset=UTF-8",
               "untimed": "FancyIndexing SuppressLastModified NameWidth=* Charset=UTF-8",
               "plain": "Charset=UTF-8"}[style]
    modules = ["mpm_event", "authz_core", "dir", "mime", "autoindex", "alias"]
    if tls:
        modules += ["ssl", "socache_shmcb"]
    conf = [f"ServerRoot {run}", f"Listen 127.0.0.1:{port}", f"PidFile {run}/httpd.pid",
            f"ErrorLog {run}/error.log", f"DefaultRuntimeDir {run}", "ServerName 127.0.0.1",
            "User www-data", "Group www-data",
            *(f"LoadModule {m}_module {MODULES}/mod_{m}.so" for m in modules),
            "TypesConfig /etc/mime.types", f"DocumentRoot {docroot}",
            f"<Directory {docroot}>", "  Options +Indexes", "  Require all granted",
            "</Directory>", f"IndexOptions {options}"]
    if gzip_encoding:
        conf.append("AddEncoding x-gzip .gz")
    if access_log is not None:
        conf += ['LogFormat "%m %U %>s" requests', f"CustomLog {access_log} requests"]
    if tls:
        conf += ["SSLEngine on", f"SSLCertificateFile {tls[0]}",
                 f"SSLCertificateKeyFile {tls[1]}", f"SSLSessionCache shmcb:{run}/scache"]
    (run / "httpd.conf").write_text("\n".join(conf) + "\n")
    with _serving([APACHE, "-f", str(run / "httpd.conf"), "-DFOREGROUND"], port, run):
        yield port


@contextmanager
def nginx(docroot: Path, *, tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """nginx on 127.0.0.1:PORT serving `docroot` with autoindex (exact sizes, its default)."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-nginx-"))
    listen = f"listen 127.0.0.1:{port}{' ssl' if tls else ''};"
    certs = (f"ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls else "")
    temps = " ".join(f"{kind}_temp_path {run}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (run / "nginx.conf").write_text(
        f"daemon off; pid {run}/nginx.pid; error_log {run}/error.log; user www-data;\n"
        "events {}\n"
        f"http {{ access_log off; include /etc/nginx/mime.types; {temps}\n"
        # as Debian's nginx.conf: listings come gzipped to a client that accepts it
        "  gzip on; gzip_min_length 1; gzip_types text/html;\n"
        f"  server {{ {listen} {certs} root {docroot};\n"
        "    location / { autoindex on; } } }\n")
    with _serving([NGINX, "-c", str(run / "nginx.conf"), "-p", str(run)], port, run):
        yield port


@contextmanager
def lighttpd(docroot: Path, *, access_log: Path | None = None,
             zone: str = "UTC") -> Iterator[int]:
    """lighttpd on 127.0.0.1:PORT serving `docroot` with its directory listing (rounded
    sizes, times as `2026-Dec-06 12:00:59` in its time zone `zone`, a TZ value);
    `access_log` as `apache`'s."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-lighttpd-"))
    logging = (f'accesslog.filename = "{access_log}"\naccesslog.format = "%m %U %s"\n'
               if access_log else "")
    (run / "lighttpd.conf").write_text(
        f'server.document-root = "{docroot}"\nserver.bind = "127.0.0.1"\n'
        f'server.port = {port}\nserver.modules = ( "mod_dirlisting", "mod_accesslog" )\n'
        f'server.errorlog = "{run}/error.log"\nserver.pid-file = "{run}/lighttpd.pid"\n'
        'dir-listing.activate = "enable"\n'
        'mimetype.assign = ( ".gz" => "application/gzip", ".md5" => "text/plain" )\n'
        + logging)
    with _serving([LIGHTTPD, "-D", "-f", str(run / "lighttpd.conf")], port, run, zone=zone):
        yield port


@contextmanager
def mini_httpd(docroot: Path, log: Path | None = None) -> Iterator[int]:
    """mini_httpd on 127.0.0.1:PORT serving `docroot` with its listing (exact sizes, times
    as `06Dec2026 12:00`; subdirectories linked without `/`), its requests logged to `log`
    when given."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-mini-httpd-"))
    with _serving([MINI_HTTPD, "-D", "-h", "127.0.0.1", "-p", str(port), "-d", str(docroot),
                   "-u", "www-data", "-l", str(log or run / "access.log"),
                   "-i", str(run / "mini_httpd.pid")], port, run):
        yield port


@contextmanager
def python_http(docroot: Path) -> Iterator[int]:
    """Python's http.server on 127.0.0.1:PORT serving `docroot` (a listing of names only:
    "Directory listing for /path/")."""
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="pm-python-http-"))
    with _serving([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                   "--directory", str(docroot), str(port)], port, run):
        yield port


@contextmanager
def _serving(cmd: list[str], port: int, run: Path, *, zone: str = "UTC") -> Iterator[None]:
    """Run the server `cmd` until the block ends, once it accepts on `port`; then remove
    its run directory (configuration, pid, logs: error.log)."""
    # in the zone asked for, UTC unless a test wants another: never the host's
    # stderr to a file, never a pipe nobody reads: http.server logs each request there and
    # would block once the pipe is full
    with (run / "stderr.log").open("wb") as errors:
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors,
                                  env={**os.environ, "TZ": zone})
    try:
        _wait(port, server, run / "error.log", run / "stderr.log")
        yield
    finally:
        stop_process(server)
        shutil.rmtree(run, ignore_errors=True)


def _wait(port: int, server: subprocess.Popen[bytes], *logs: Path,
          what: str = "the web server", timeout: float = 10) -> None:
    """Until `server` accepts connections on `port`; else it is stopped and RuntimeError
    says why (its stderr, and the `logs` that exist)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            if server.poll() is None:
                server.kill()
            err = server.stderr.read().decode() if server.stderr else ""
            stop_process(server)
            text = "".join(log.read_text() for log in logs if log.exists())
            raise RuntimeError(f"{what} did not start: {err}{text}")
        time.sleep(0.05)


def stop_process(server: subprocess.Popen[bytes]) -> None:
    """Terminate a server the tests started (killed if it does not go within 5 s)."""
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    if server.stderr:
        server.stderr.close()
