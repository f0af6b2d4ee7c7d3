"""Find, download and verify the SentEval data (SimCSE's preprocessed tarball).

:func:`ensure_senteval` is what ``tpembed run`` / ``eval`` / ``sweep`` call before any model is
loaded: an explicit folder (``--data`` / ``$TPEMBED_DATA``) is checked, else a known copy is used,
else the tarball is downloaded once into ``$TPEMBED_CACHE/senteval``. A download is checked
(SHA-256, size, every task's files and the README's counts) in a hidden staging folder and only
then moved into place, one top-level folder at a time with ``os.replace``; the marker file that
makes the cache copy count is written last. An interrupted download therefore never leaves a
folder that passes as data. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..embedding_cache import default_cache_dir
from .data import DATA_ENV_VAR, TASKS, check_data_dir, get_spec

SENTEVAL_URL = ("https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/"
                "resolve/main/senteval.tar")
SENTEVAL_SHA256: str | None = None
"""Pinned SHA-256 of :data:`SENTEVAL_URL`. None: no published hash could be checked when this was
written, so a download from the Hub is checked against the SHA-256 the Hub declares for the file
(its ``X-Linked-Etag`` header, the Git LFS object id) plus every task's files and counts."""
URL_ENV_VAR = "TPEMBED_DATA_URL"
SHA256_ENV_VAR = "TPEMBED_DATA_SHA256"
MARKER = ".tpembed-senteval.json"
"""Written last into a download's folder; a cached copy without it does not count."""
_STAGING_PREFIX = ".partial-"
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class DownloadError(OSError):
    """The SentEval data could not be fetched (network / HTTP error, checksum or size mismatch)."""


def senteval_url() -> str:
    """``$TPEMBED_DATA_URL``, else the SimCSE tarball on the Hugging Face Hub."""
    return os.environ.get(URL_ENV_VAR) or SENTEVAL_URL


def cached_senteval_dir() -> Path:
    """Where downloads land by default: ``$TPEMBED_CACHE/senteval``."""
    return default_cache_dir() / "senteval"


def remedies() -> str:
    """The two ways to get the data, as a user needs to read them in an error."""
    return ("point tpembed at a copy with --data DIR (or $TPEMBED_DATA=DIR; the folder holding STS/, SICK/, "
            "MR/, ...), or fetch one on a machine with network access: tpembed data download DIR")


# ---------------------------------------------------------------- downloading


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Keeps the headers of every redirect (the Hub declares a file's SHA-256 on its redirect)."""

    def __init__(self) -> None:
        self.headers: list[object] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _declared(all_headers: Iterable[object]) -> tuple[str | None, int | None]:
    """SHA-256 and size a server declares (``X-Linked-Etag`` / ``X-Linked-Size``, as the Hub sends)."""
    sha, size = None, None
    for headers in all_headers:
        etag = headers.get("X-Linked-Etag") or ""  # type: ignore[attr-defined]
        etag = etag.strip().removeprefix("W/").strip('"').lower()
        if _SHA256.fullmatch(etag):
            sha = etag
        linked_size = headers.get("X-Linked-Size")  # type: ignore[attr-defined]
        if linked_size and linked_size.isdigit():
            size = int(linked_size)
    return sha, size


def _stream(url: str, dest: Path, progress: bool, timeout: float) -> tuple[str, str | None]:
    """Stream ``url`` into ``dest``; return (sha256 of the bytes, SHA-256 the server declared or None)."""
    digest = hashlib.sha256()
    redirects = _RecordRedirects()
    opener = urllib.request.build_opener(redirects)
    received = 0
    try:
        with opener.open(url, timeout=timeout) as resp, open(dest, "wb") as fh:
            length = int(resp.headers.get("Content-Length") or 0) or None
            declared_sha, declared_size = _declared([*redirects.headers, resp.headers])
            expected_size = declared_size or length
            with tqdm(total=expected_size, unit="B", unit_scale=True, desc=f"downloading {Path(url).name}",
                      disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as err:
        raise DownloadError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
        reason = getattr(err, "reason", None) or err
        raise DownloadError(f"download of {url} failed: {reason}") from err
    if expected_size is not None and received != expected_size:
        raise DownloadError(f"download of {url} is incomplete: got {received} of {expected_size} bytes")
    return digest.hexdigest(), declared_sha


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

    The tarball may nest them (e.g. ``downstream/``); the shallowest match wins. Hidden folders
    (a download's staging area among them) are never searched.
    """
    names = list(TASKS) if tasks is None else list(tasks)
    needed = sorted({get_spec(t).folder.split("/")[0] for t in names})
    base = Path(base)
    level = [base]
    for _ in range(max_depth + 1):
        for d in level:
            if all((d / n).is_dir() for n in needed):
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
    raise FileNotFoundError(f"no folder under {str(base)!r} contains {', '.join(needed)} "
                            "(is this the SentEval data?)")


def _expected_sha256(url: str, expected: str | None) -> tuple[str | None, str]:
    """The SHA-256 to insist on and where it comes from (argument, environment, pinned)."""
    if expected:
        return expected.strip().lower(), "given"
    if os.environ.get(SHA256_ENV_VAR):
        return os.environ[SHA256_ENV_VAR].strip().lower(), f"${SHA256_ENV_VAR}"
    if url == SENTEVAL_URL and SENTEVAL_SHA256:
        return SENTEVAL_SHA256, "pinned"
    return None, "none"


def _install(staging: Path, dest: Path, force: bool) -> None:
    """Move each top-level entry of ``staging`` into ``dest`` (one atomic rename per entry).

    An entry already in ``dest`` is kept (another process installed the same verified data)
    unless ``force``; then the old one is moved aside into ``staging`` and deleted with it.
    """
    for entry in sorted(staging.iterdir()):
        if entry.name.endswith(".part"):
            continue
        target = dest / entry.name
        if target.exists() or target.is_symlink():
            if not force:
                continue
            os.replace(target, staging / f".old-{entry.name}")
        os.replace(entry, target)


def download_senteval(dest_dir: str | os.PathLike[str], url: str | None = None,
                      expected_sha256: str | None = None, progress: bool = True, *,
                      tasks: Sequence[str] | None = None, verify: bool = True,
                      force: bool = False, timeout: float = 60.0) -> Path:
    """Download, check and unpack the SentEval tarball into ``dest_dir``; return the data folder.

    ``url`` defaults to ``$TPEMBED_DATA_URL``, else :data:`SENTEVAL_URL`. The SHA-256 checked is
    ``expected_sha256``, else ``$TPEMBED_DATA_SHA256``, else the pinned one for the default URL,
    else the one the server declares (the Hub's ``X-Linked-Etag``). ``tasks`` limits which tasks
    must be present (default all); ``verify`` also checks the README's counts for them. Everything
    is checked in a hidden staging folder inside ``dest_dir`` before it is moved into place, and a
    marker file (:data:`MARKER`) is written last. If ``dest_dir`` already holds a valid copy and
    ``force`` is false, nothing is downloaded. Raises DownloadError (network / HTTP / checksum /
    archive problems), FileNotFoundError or ValueError (missing files / wrong counts).
    """
    url = url or senteval_url()
    dest = Path(dest_dir).expanduser()
    if not force and dest.is_dir():
        try:
            root = find_data_root(dest, tasks)
            check_data_dir(root, tasks, check_counts=verify)
            return root
        except (FileNotFoundError, ValueError):
            pass  # not there yet (or incomplete): download
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=dest))
    try:
        archive = staging / "senteval.tar.part"
        digest, declared = _stream(url, archive, progress, timeout)
        expected, source = _expected_sha256(url, expected_sha256)
        if expected is None and declared is not None:
            expected, source = declared, "declared by the server"
        if expected is not None and digest != expected:
            raise DownloadError(f"checksum mismatch for {url}: expected sha256 {expected} ({source}), got {digest}")
        try:
            extract_tar(archive, staging)
        except tarfile.TarError as err:
            raise DownloadError(f"{url} is not a readable tar archive: {err}") from err
        archive.unlink()
        root = find_data_root(staging, tasks)
        check_data_dir(root, tasks, check_counts=verify)
        relative = root.relative_to(staging)
        _install(staging, dest, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = {"url": url, "sha256": digest, "sha256_checked_against": source if expected else None,
              "root": relative.as_posix(), "tasks_verified": sorted(tasks or TASKS) if verify else [],
              "counts_checked": verify, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (dest / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    return dest / relative


# ---------------------------------------------------------------- finding


def _checkout_copy() -> Path | None:
    """``../shared/senteval`` beside a source checkout (the developers' copy), if this is one."""
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / "pyproject.toml").is_file():
        return None  # an installed package: there is no checkout around it
    candidate = checkout.parent / "shared" / "senteval"
    return candidate if candidate.is_dir() else None


def _cached_copy() -> Path | None:
    """The downloaded copy in the tpembed cache, if its download finished (marker present)."""
    marker = cached_senteval_dir() / MARKER
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return cached_senteval_dir() / record.get("root", ".")


def _with_tasks(root: Path, tasks: Sequence[str] | None, where: str) -> Path:
    """``root`` (or the data folder nested in it) after checking the tasks' files are there."""
    if not root.is_dir():
        raise FileNotFoundError(f"SentEval data folder {str(root)!r} ({where}) does not exist; {remedies()}")
    try:
        check_data_dir(root, tasks, check_counts=False)
        return root
    except FileNotFoundError as err:
        problem = err
    try:  # the folder the tarball was unpacked into, with the data further down
        nested = find_data_root(root, tasks)
        if nested != root:
            check_data_dir(nested, tasks, check_counts=False)
            return nested
    except FileNotFoundError:
        pass
    raise FileNotFoundError(f"{problem}\n({where}) {remedies()}")


def locate_senteval(tasks: Sequence[str] | None = None) -> Path | None:
    """A usable copy without asking for one: beside a source checkout, else in the cache (None: none)."""
    for candidate in (_checkout_copy(), _cached_copy()):
        if candidate is None:
            continue
        try:
            check_data_dir(candidate, tasks, check_counts=False)
            return candidate
        except (FileNotFoundError, ValueError):
            continue
    return None


def ensure_senteval(data_dir: str | os.PathLike[str] | None = None, tasks: Sequence[str] | None = None, *,
                    progress: bool = True, timeout: float = 20.0) -> Path:
    """The SentEval folder to evaluate on, checked for ``tasks``' files; downloads it once if needed.

    Order: ``data_dir``, ``$TPEMBED_DATA``, a copy beside a source checkout or in the cache, else a
    download (:func:`download_senteval` of :func:`senteval_url`) into :func:`cached_senteval_dir`.
    An explicit folder that lacks files is an error (never silently replaced by a download).
    Raises DownloadError naming both remedies when the download fails (e.g. offline), quickly.
    """
    if data_dir is not None:
        return _with_tasks(Path(data_dir).expanduser(), tasks, "--data")
    if os.environ.get(DATA_ENV_VAR):
        return _with_tasks(Path(os.environ[DATA_ENV_VAR]).expanduser(), tasks, f"${DATA_ENV_VAR}")
    found = locate_senteval(tasks)
    if found is not None:
        return found
    dest, url = cached_senteval_dir(), senteval_url()
    if progress:
        print(f"no SentEval data found: downloading it once into {dest} from {url}", file=sys.stderr)
    try:
        return download_senteval(dest, url, progress=progress, timeout=timeout)
    except DownloadError as err:
        raise DownloadError(f"no SentEval data found and {err}\nTo go on, {remedies()}") from err
