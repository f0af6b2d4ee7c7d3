"""Download and verify the SentEval data (SimCSE's preprocessed tarball)."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .data import TASKS, check_data_dir, get_spec

SENTEVAL_URL = ("https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/"
                "resolve/main/senteval.tar")
_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The SentEval download failed (HTTP/network error or checksum mismatch)."""


def _stream(url: str, dest: Path, progress: bool, timeout: float) -> str:
    """Stream ``url`` into ``dest``; return the sha256 hex digest of the bytes."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as fh:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="senteval.tar",
                      disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"download of {url} failed: {err}") from err
    return digest.hexdigest()


def _safe_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Only plain files and folders with relative paths that stay inside the target."""
    members = []
    for m in tar.getmembers():
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts or m.name.startswith(("/", "\\")):
            raise DownloadError(f"unsafe path in archive: {m.name!r}")
        if not (m.isfile() or m.isdir()):
            raise DownloadError(f"archive member {m.name!r} is not a plain file or folder "
                                "(links/devices are refused)")
        members.append(m)
    return members


def extract_tar(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Extract ``archive`` into ``dest``, refusing absolute paths, ``..`` and links."""
    with tarfile.open(archive, "r:*") as tar:
        members = _safe_members(tar)
        kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(dest, members=members, **kwargs)  # noqa: S202 (members vetted above)


def find_data_root(base: str | os.PathLike[str], tasks: Iterable[str] | None = None,
                   max_depth: int = 4) -> Path:
    """Find the folder under ``base`` holding the task folders (``STS/``, ``SICK/``, ``MR/``...).

    The tarball may nest them (e.g. ``downstream/``); the shallowest match wins.
    """
    names = list(TASKS) if tasks is None else list(tasks)
    needed = sorted({get_spec(t).folder.split("/")[0] for t in names})
    base = Path(base)
    level = [base]
    for _ in range(max_depth + 1):
        for d in level:
            if all((d / n).is_dir() for n in needed):
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
    raise FileNotFoundError(f"no folder under {str(base)!r} contains {', '.join(needed)} "
                            "(is this the SentEval data?)")


def download_senteval(dest_dir: str | os.PathLike[str], url: str = SENTEVAL_URL,
                      expected_sha256: str | None = None, progress: bool = True, *,
                      tasks: Sequence[str] | None = None, verify: bool = True,
                      force: bool = False, timeout: float = 60.0) -> Path:
    """Download, check and extract the SentEval tarball into ``dest_dir``.

    Returns the data dir to pass to the evaluators (the folder holding ``STS/``,
    ``SICK/``, ``MR/``...). ``tasks`` limits which tasks must be present (default all);
    ``verify`` checks files and the README's counts for them. If ``dest_dir`` already
    holds a valid copy and ``force`` is false, nothing is downloaded.
    Raises DownloadError (HTTP / checksum / archive problems), FileNotFoundError or
    ValueError (missing files / wrong counts).
    """
    dest = Path(dest_dir).expanduser()
    if not force and dest.is_dir():
        try:
            root = find_data_root(dest, tasks)
            if verify:
                check_data_dir(root, tasks)
            return root
        except (FileNotFoundError, ValueError):
            pass  # not there yet (or incomplete): download
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".senteval-", suffix=".part", dir=dest)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        digest = _stream(url, tmp, progress, timeout)
        if expected_sha256 is not None and digest.lower() != expected_sha256.strip().lower():
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 "
                                f"{expected_sha256}, got {digest}")
        try:
            extract_tar(tmp, dest)
        except tarfile.TarError as err:
            raise DownloadError(f"{url} is not a readable tar archive: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    root = find_data_root(dest, tasks)
    if verify:
        check_data_dir(root, tasks)
    return root
