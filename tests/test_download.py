"""The download path, against a local HTTP server on 127.0.0.1 (no internet needed)."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from forecast.data.download import fetch, sha256_file
from forecast.data.registry import DatasetSpec, dataset_path

BODY = b"date,OT\n2020-01-01 00:00:00,1.5\n2020-01-01 01:00:00,2.5\n"
SHA = hashlib.sha256(BODY).hexdigest()
TIMEOUT = 5.0


class _Handler(BaseHTTPRequestHandler):
    """Serves BODY at /data.csv, a body shorter than announced at /truncated.csv, else 404."""

    def do_GET(self) -> None:  # noqa: N802 (name fixed by http.server)
        self.server.requests.append(self.path)
        if self.path == "/data.csv":
            self._send(BODY, len(BODY))
        elif self.path == "/truncated.csv":
            # Announce more bytes than are sent, then the connection closes (HTTP/1.0).
            self._send(BODY, len(BODY) + 1000)
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


class _Server:
    def __init__(self) -> None:
        self.httpd = HTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.requests = []
        self.httpd.timeout = TIMEOUT
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def requests(self) -> list[str]:
        return self.httpd.requests

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=TIMEOUT)


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verifies_and_is_not_repeated(server, tmp_path):
    dest = tmp_path / "cache" / "data.csv"
    assert fetch(server.url("/data.csv"), dest, SHA, timeout=TIMEOUT, progress=False) == dest
    assert dest.read_bytes() == BODY
    assert _leftovers(dest.parent) == ["data.csv"]

    fetch(server.url("/data.csv"), dest, SHA.upper(), timeout=TIMEOUT, progress=False)
    assert server.requests == ["/data.csv"]


def test_progress_bar_can_be_on(server, tmp_path):
    dest = tmp_path / "data.csv"
    fetch(server.url("/data.csv"), dest, SHA, timeout=TIMEOUT, progress=True)
    assert sha256_file(dest) == SHA


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    url = server.url("/data.csv")
    wrong = "0" * 64
    message = f"checksum mismatch for {url}: expected sha256 {wrong}, got {SHA}"
    with pytest.raises(ValueError, match=re.escape(message)):
        fetch(url, tmp_path / "data.csv", wrong, timeout=TIMEOUT, progress=False)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing(server, tmp_path):
    url = server.url("/truncated.csv")
    message = (
        f"could not download {url}: connection closed after {len(BODY)} of "
        f"{len(BODY) + 1000} bytes. To use a copy you downloaded yourself, pass its path"
    )
    with pytest.raises(ConnectionError, match=re.escape(message)):
        fetch(url, tmp_path / "data.csv", SHA, timeout=TIMEOUT, progress=False)
    assert _leftovers(tmp_path) == []


def test_http_404_is_a_connection_error(server, tmp_path):
    url = server.url("/missing.csv")
    message = f"could not download {url}: HTTP 404 Not Found. To use a copy you downloaded"
    with pytest.raises(ConnectionError, match=re.escape(message)):
        fetch(url, tmp_path / "missing.csv", SHA, timeout=TIMEOUT, progress=False)
    assert _leftovers(tmp_path) == []


def test_refused_connection_names_url_and_local_file_option(tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.csv"
    with pytest.raises(ConnectionError, match=rf"could not download {re.escape(url)}: .*data_path"):
        fetch(url, tmp_path / "data.csv", SHA, timeout=TIMEOUT, progress=False)
    assert _leftovers(tmp_path) == []


def test_existing_file_with_other_checksum_is_not_overwritten(server, tmp_path):
    dest = tmp_path / "data.csv"
    dest.write_bytes(b"my own edited copy\n")
    mine = sha256_file(dest)
    message = (
        f"{dest} already exists but its sha256 is {mine}, expected {SHA}; it is left untouched"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        fetch(server.url("/data.csv"), dest, SHA, timeout=TIMEOUT, progress=False)
    assert dest.read_bytes() == b"my own edited copy\n"
    assert server.requests == []
    assert _leftovers(tmp_path) == ["data.csv"]


def test_malformed_checksum_and_scheme_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal characters, got 'abc'"):
        fetch("https://example.invalid/x.csv", tmp_path / "x.csv", "abc", progress=False)
    with pytest.raises(ValueError, match="can only download http, https or file URLs, got 'ftp:"):
        fetch("ftp://example.invalid/x.csv", tmp_path / "x.csv", None, progress=False)


TOY = DatasetSpec(
    name="toy",
    description="two hourly rows",
    url="http://127.0.0.1:9/unused",
    filename="toy.csv",
    sha256="",
    freq="h",
    time_column="date",
    targets=("OT",),
    columns=("OT",),
    split="ratio",
    seasonal_period=24,
    ratios=(0.7, 0.1, 0.2),
)


def test_dataset_without_checksum_warns_and_records_hash(server, tmp_path, caplog):
    spec = dataclasses.replace(TOY, url=server.url("/data.csv"))
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="forecast.data.registry"):
        path = dataset_path(spec, cache_dir=cache)
    assert path == cache / "toy.csv"
    assert f"dataset toy has no registered sha256; {path} has sha256 {SHA}" in caplog.text
    assert (cache / "toy.csv.sha256").read_text() == f"{SHA}  toy.csv\n"

    # Second call: served from the cache, checked against the recorded hash.
    assert dataset_path(spec, cache_dir=cache) == path
    assert server.requests == ["/data.csv"]
    path.write_bytes(b"changed\n")
    with pytest.raises(ValueError, match=f"already exists but its sha256 is .*, expected {SHA}"):
        dataset_path(spec, cache_dir=cache)


def test_registry_download_into_cache_with_checksum(server, tmp_path):
    spec = dataclasses.replace(TOY, url=server.url("/data.csv"), sha256=SHA)
    path = dataset_path(spec, cache_dir=tmp_path)
    assert path.read_bytes() == BODY
    assert _leftovers(tmp_path) == ["toy.csv"]
