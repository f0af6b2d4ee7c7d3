"""download_senteval against a loopback HTTP server (no outside network)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from tpembed.evaluation import DownloadError, download_senteval, find_data_root, load_task

SUBSET_TASKS = ["STS12", "MR"]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """Serves tmp_path/www on 127.0.0.1; yields (www folder, base URL)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _real_subset_tar(data_dir: Path, out: Path) -> str:
    """Tar STS12 + MR from the real data under downstream/ (as SimCSE nests it)."""
    with tarfile.open(out, "w") as tar:
        for folder in ("STS/STS12-en-test", "MR"):
            for f in sorted((data_dir / folder).iterdir()):
                tar.add(f, arcname=f"downstream/{folder}/{f.name}")
    return hashlib.sha256(out.read_bytes()).hexdigest()


def test_download_extract_and_verify(server, tmp_path, data_dir):
    www, base = server
    sha = _real_subset_tar(data_dir, www / "senteval.tar")
    dest = tmp_path / "data"
    root = download_senteval(dest, f"{base}/senteval.tar", expected_sha256=sha,
                             progress=False, tasks=SUBSET_TASKS)
    assert root == dest / "downstream"
    assert load_task("STS12", root).n_pairs == 3108  # the README count, re-checked
    assert not list(dest.glob("*.part"))  # temp file removed
    # already present: returns without touching the network
    (www / "senteval.tar").unlink()
    assert download_senteval(dest, f"{base}/senteval.tar", progress=False,
                             tasks=SUBSET_TASKS) == root


def test_verification_catches_wrong_counts(server, tmp_path):
    www, base = server
    with tarfile.open(www / "small.tar", "w") as tar:
        for name, text in (("MR/rt-polarity.pos", "good .\n"), ("MR/rt-polarity.neg", "bad .\n")):
            data = text.encode()
            info = tarfile.TarInfo(f"senteval/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="MR: expected"):
        download_senteval(tmp_path / "a", f"{base}/small.tar", progress=False, tasks=["MR"])
    root = download_senteval(tmp_path / "b", f"{base}/small.tar", progress=False,
                             tasks=["MR"], verify=False)
    assert root == tmp_path / "b" / "senteval"
    with pytest.raises(FileNotFoundError, match="STS"):
        download_senteval(tmp_path / "c", f"{base}/small.tar", progress=False, verify=False)


def test_checksum_mismatch(server, tmp_path):
    www, base = server
    (www / "x.tar").write_bytes(b"not really a tar")
    dest = tmp_path / "d"
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_senteval(dest, f"{base}/x.tar", expected_sha256="0" * 64, progress=False)
    assert not list(dest.iterdir())  # nothing left behind
    with pytest.raises(DownloadError, match="not a readable tar"):
        download_senteval(dest, f"{base}/x.tar", progress=False)


def test_http_404(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="404"):
        download_senteval(tmp_path / "d", f"{base}/missing.tar", progress=False)


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_unsafe_members_are_rejected(server, tmp_path, name):
    www, base = server
    with tarfile.open(www / "evil.tar", "w") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    dest = tmp_path / "deep" / "d"
    with pytest.raises(DownloadError, match="unsafe path"):
        download_senteval(dest, f"{base}/evil.tar", progress=False, verify=False)
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_members_are_rejected(server, tmp_path):
    www, base = server
    with tarfile.open(www / "link.tar", "w") as tar:
        info = tarfile.TarInfo("MR/rt-polarity.pos")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="not a plain file"):
        download_senteval(tmp_path / "d", f"{base}/link.tar", progress=False, verify=False)


def test_find_data_root_real(data_dir):
    assert find_data_root(data_dir) == data_dir
