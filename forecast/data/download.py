"""Download one file into a cache, atomically and checksum-verified.

The bytes go to a temporary ``<name>.part-<random>`` file beside the destination and are
moved into place with `os.replace` only after the whole body arrived and its sha256 matched.
Any failure removes the temporary file, so the cache never holds a partial or wrong file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import secrets
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_LOCAL_FILE_HINT = (
    "To use a copy you downloaded yourself, pass its path instead "
    "(data_path=..., or the FORECAST_DATA_<NAME> / FORECAST_DATA_DIR environment variables)."
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks.

    Args:
        path: the file to hash.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not SHA256_PATTERN.fullmatch(value):
        raise ValueError(f"sha256 must be 64 hexadecimal characters, got {sha256!r}")
    return value


def fetch(
    url: str,
    dest: Path,
    sha256: str | None,
    *,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` unless a file with the right checksum is already there.

    Args:
        url: http(s) or file URL to download.
        dest: where the file should end up; its folder is created if needed.
        sha256: expected hex digest; None skips verification (the computed hash is logged).
        timeout: seconds to wait on connecting and on each read.
        progress: show a tqdm progress bar on stderr.

    Returns:
        `dest`.

    Raises:
        ValueError: the download's checksum does not match, or `dest` already exists with a
            different checksum (it is never overwritten).
        ConnectionError: the server answered with an error, the connection failed or the
            body was shorter than announced.
    """
    dest = Path(dest)
    expected = _normalise_sha256(sha256)
    if dest.exists():
        return _check_existing(dest, expected)
    scheme = url.split(":", 1)[0].lower()
    if scheme not in ("http", "https", "file"):
        raise ValueError(f"can only download http, https or file URLs, got {url!r}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.part-{secrets.token_hex(4)}")
    try:
        actual = _download(url, part, timeout=timeout, progress=progress)
        if expected is not None and actual != expected:
            raise ValueError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {actual}; "
                "the download was discarded"
            )
        if expected is None:
            log.info("downloaded %s without a known checksum; sha256 is %s", url, actual)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    log.info("saved %s to %s", url, dest)
    return dest


def _check_existing(dest: Path, expected: str | None) -> Path:
    if expected is None:
        log.debug("using %s as it is (no checksum to verify)", dest)
        return dest
    actual = sha256_file(dest)
    if actual != expected:
        raise ValueError(
            f"{dest} already exists but its sha256 is {actual}, expected {expected}; "
            "it is left untouched: move or delete it to download a fresh copy"
        )
    log.debug("%s is present with the expected checksum; not downloading", dest)
    return dest


def _download(url: str, part: Path, *, timeout: float, progress: bool) -> str:
    """Stream `url` into `part`; return the sha256 of the bytes received."""
    request = urllib.request.Request(url, headers={"User-Agent": "forecast-dataset-fetch"})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length_header = response.headers.get("Content-Length")
            expected_len = int(length_header) if length_header else None
            with (
                open(part, "wb") as out,
                tqdm(
                    total=expected_len,
                    unit="B",
                    unit_scale=True,
                    desc=part.name.split(".part-")[0],
                    disable=not progress,
                ) as bar,
            ):
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                out.flush()
                os.fsync(out.fileno())
    except urllib.error.HTTPError as err:
        raise ConnectionError(
            f"could not download {url}: HTTP {err.code} {err.reason}. {_LOCAL_FILE_HINT}"
        ) from err
    except (OSError, http.client.HTTPException) as err:
        raise ConnectionError(f"could not download {url}: {err}. {_LOCAL_FILE_HINT}") from err
    if expected_len is not None and received != expected_len:
        raise ConnectionError(
            f"could not download {url}: connection closed after {received} of "
            f"{expected_len} bytes. {_LOCAL_FILE_HINT}"
        )
    return digest.hexdigest()
