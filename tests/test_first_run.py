"""A first run on a fresh machine: named configs shipped in the package, the SentEval data fetched once
(checked, installed atomically), every cheap check before the model loads, quiet start-up output.

The data is served from a loopback HTTP server; nothing here reaches the outside network.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import DATA_DIR, REPO_ROOT
from typer.testing import CliRunner

import tpembed.evaluation.download as download
from tpembed.cli import app
from tpembed.config import RunConfig, default_config_path, load_config_file
from tpembed.evaluation import DownloadError, ensure_senteval, locate_senteval
from tpembed.evaluation.download import MARKER

DATA_FOLDERS = ("CR", "MPQA", "MR", "MRPC", "SICK", "SST", "STS", "SUBJ", "TREC")


# ---------------------------------------------------------------- a loopback "Hub"


class _Hub(http.server.ThreadingHTTPServer):
    """Serves bytes by path; a route can redirect (with headers, as the Hugging Face Hub does) or cut off."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, tuple[str, dict[str, str]]] = {}
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the connection drops
        self.hits: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Hub

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        hub = self.server
        hub.hits.append(self.path)
        if self.path in hub.redirects:
            target, headers = hub.redirects[self.path]
            self.send_response(302)
            self.send_header("Location", target)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = hub.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: hub.cut_after.get(self.path, len(body))])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def senteval_tar() -> bytes:
    """The SentEval folders as one tarball, laid out like SimCSE's senteval.tar (task folders on top)."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"SentEval data not found at {DATA_DIR} (set TPEMBED_DATA)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for folder in DATA_FOLDERS:
            tar.add(DATA_DIR / folder, arcname=folder)
    return buffer.getvalue()


@pytest.fixture
def hub():
    server = _Hub()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> Path:
    """A machine with no SentEval data anywhere: empty cache, no $TPEMBED_DATA, no copy beside the checkout."""
    for var in ("TPEMBED_DATA", "TPEMBED_DATA_URL", "TPEMBED_DATA_SHA256", "http_proxy", "HTTP_PROXY",
                "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    cache = tmp_path / "cache"
    monkeypatch.setenv("TPEMBED_CACHE", str(cache))
    monkeypatch.setattr(download, "_checkout_copy", lambda: None)
    assert locate_senteval() is None
    return cache


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/senteval.tar"  # nothing listens there any more


def _leftovers(cache: Path) -> list[str]:
    """What a failed download left in the cache's data folder."""
    folder = cache / "senteval"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- named configs, shipped in the package


def test_named_configs_are_package_data():
    path = default_config_path()
    assert path.is_file() and path.parent.name == "configs" and path.parent.parent.name == "tpembed"
    # the paper's `bash run.sh NAME` path in a checkout is the same file, not a copy that could drift
    assert (REPO_ROOT / "configs" / "config.yaml").resolve() == path.resolve()
    assert '"configs/*.yaml"' in (REPO_ROOT / "pyproject.toml").read_text()


def test_configs_lists_every_entry_and_shows_one_as_a_file_to_edit(tmp_path):
    config_file = load_config_file(default_config_path())
    listing = CliRunner().invoke(app, ["configs"])
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    for name, entry in config_file.models.items():
        row = next(line for line in lines if line.split()[0] == name)
        methods = entry.prompt_method if isinstance(entry.prompt_method, str) else "+".join(entry.prompt_method)
        assert entry.model in row and entry.use_which_plan in row and methods in row  # an ensemble shows as a+b
        assert f"output {entry.output_layer}" in row
        if entry.use_which_plan == "tp":
            assert f"TP [{entry.tp_starting_index}, {entry.tp_exiting_index})" in row
    assert "(default)" in next(line for line in lines if line.startswith(config_file.default_config + " "))

    shown = CliRunner().invoke(app, ["configs", "--show", "smollm2-135m-tp"])
    assert shown.exit_code == 0, shown.output
    saved = tmp_path / "mine.yaml"
    saved.write_text(shown.output)
    again = load_config_file(saved)  # what it prints is a config file tpembed run accepts as it is
    assert again.default_config == "smollm2-135m-tp" and list(again.models) == ["smollm2-135m-tp"]
    assert again.models["smollm2-135m-tp"] == config_file.models["smollm2-135m-tp"]
    assert "tp_exiting_index: 2" in shown.output  # every key spelled out, ready to edit
    assert set(yaml.safe_load(shown.output)["models"]["smollm2-135m-tp"]) == (
        set(RunConfig.model_fields) - {"model"} | {"model_name_or_path"}
    )

    missing = CliRunner().invoke(app, ["configs", "--show", "no-such"])
    assert missing.exit_code == 2 and "smollm2-135m-tp" in missing.output


# ---------------------------------------------------------------- the data: fetched once, checked, atomic


def test_fetched_once_into_the_cache_then_found_there(fresh, hub, senteval_tar, monkeypatch):
    hub.files["/senteval.tar"] = senteval_tar
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/senteval.tar"))
    monkeypatch.setenv("TPEMBED_DATA_SHA256", hashlib.sha256(senteval_tar).hexdigest())
    root = ensure_senteval(None, ["STS12", "MR"], progress=False)
    assert root == fresh / "senteval"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == sorted(DATA_FOLDERS)
    record = json.loads((root / MARKER).read_text())
    assert record["sha256"] == hashlib.sha256(senteval_tar).hexdigest()
    assert record["sha256_checked_against"] == "$TPEMBED_DATA_SHA256" and record["counts_checked"]
    assert not [p for p in root.iterdir() if p.name.startswith(".partial-")]  # staging removed
    # the same bytes as the source, file by file
    for path in (DATA_DIR / "STS" / "STS12-en-test").iterdir():
        assert (root / "STS" / "STS12-en-test" / path.name).read_bytes() == path.read_bytes()
    assert ensure_senteval(None, ["SICKRelatedness"], progress=False) == root
    assert locate_senteval() == root
    assert hub.hits == ["/senteval.tar"]  # found in the cache the second time: no second download


def test_checksum_declared_by_the_server_on_its_redirect(fresh, hub, senteval_tar, monkeypatch):
    # the Hub answers resolve/main/<file> with a redirect carrying X-Linked-Etag (the file's SHA-256)
    good = hashlib.sha256(senteval_tar).hexdigest()
    hub.files["/blob"] = senteval_tar
    hub.redirects["/ok.tar"] = ("/blob", {"X-Linked-Etag": f'"{good}"', "X-Linked-Size": str(len(senteval_tar))})
    hub.redirects["/bad.tar"] = ("/blob", {"X-Linked-Etag": f'"{"0" * 64}"'})
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/bad.tar"))
    with pytest.raises(DownloadError, match="(?s)checksum mismatch.*declared by the server.*--data DIR.*"
                                           "tpembed data download DIR"):
        ensure_senteval(None, ["MR"], progress=False)
    assert _leftovers(fresh) == [] and locate_senteval() is None
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/ok.tar"))
    root = ensure_senteval(None, ["MR"], progress=False)
    assert json.loads((root / MARKER).read_text())["sha256_checked_against"] == "declared by the server"


def test_an_interrupted_download_leaves_nothing_that_passes_as_data(fresh, hub, senteval_tar, monkeypatch):
    hub.files["/senteval.tar"] = senteval_tar
    hub.cut_after["/senteval.tar"] = len(senteval_tar) // 2  # the connection drops half-way
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/senteval.tar"))
    with pytest.raises(DownloadError, match="(?s)download of .* (failed|incomplete).*--data DIR"):
        ensure_senteval(None, ["STS12"], progress=False)
    assert _leftovers(fresh) == [] and locate_senteval() is None

    # killed while moving the checked folders into place: some task folders, no marker
    del hub.cut_after["/senteval.tar"]
    real_replace = download.os.replace
    moves: list[str] = []

    def crash_after_two(src, dst):
        if len(moves) == 2:
            raise KeyboardInterrupt
        moves.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(download.os, "replace", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        ensure_senteval(None, ["STS12"], progress=False)
    monkeypatch.setattr(download.os, "replace", real_replace)
    assert _leftovers(fresh) == moves  # two whole folders, no staging area, no marker
    assert locate_senteval() is None  # so the cache copy does not count yet
    root = ensure_senteval(None, ["STS12"], progress=False)  # the next run finishes the job
    assert (root / MARKER).is_file() and locate_senteval() == root
    assert hub.hits == ["/senteval.tar"] * 3


def test_offline_fails_fast_naming_both_remedies(fresh, monkeypatch):
    monkeypatch.setenv("TPEMBED_DATA_URL", _closed_port_url())
    start = time.perf_counter()
    with pytest.raises(DownloadError) as err:
        ensure_senteval(None, ["STS12"], progress=False)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "--data DIR" in message and "$TPEMBED_DATA" in message and "tpembed data download DIR" in message
    assert _leftovers(fresh) == []


def test_an_explicit_folder_is_checked_never_replaced_by_a_download(fresh, hub, tmp_path, senteval_tar, monkeypatch):
    hub.files["/senteval.tar"] = senteval_tar
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/senteval.tar"))
    with pytest.raises(FileNotFoundError, match="(?s)does not exist.*tpembed data download DIR"):
        ensure_senteval(tmp_path / "nowhere", ["STS12"], progress=False)
    partial = tmp_path / "partial"
    (partial / "STS").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="(?s)missing.*STS12-en-test.*tpembed data download DIR"):
        ensure_senteval(partial, ["STS12"], progress=False)
    monkeypatch.setenv("TPEMBED_DATA", str(partial))
    with pytest.raises(FileNotFoundError, match=r"\$TPEMBED_DATA"):
        ensure_senteval(None, ["STS12"], progress=False)
    assert hub.hits == []
    # a folder the tarball was unpacked into, one level above the data, is accepted
    monkeypatch.delenv("TPEMBED_DATA")
    (tmp_path / "unpacked" / "downstream").mkdir(parents=True)
    (tmp_path / "unpacked" / "downstream" / "STS").symlink_to(DATA_DIR / "STS")
    assert ensure_senteval(tmp_path / "unpacked", ["STS12"], progress=False) == tmp_path / "unpacked" / "downstream"


def test_data_download_command_uses_the_environment_url(fresh, hub, senteval_tar, tmp_path, monkeypatch):
    hub.files["/senteval.tar"] = senteval_tar
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/senteval.tar"))
    result = CliRunner().invoke(app, ["data", "download", str(tmp_path / "mine"), "--quiet",
                                      "--sha256", hashlib.sha256(senteval_tar).hexdigest()])
    assert result.exit_code == 0, result.output
    assert f"--data {tmp_path / 'mine'}" in result.output
    bad = CliRunner().invoke(app, ["data", "download", str(tmp_path / "other"), "-q", "--sha256", "0" * 64])
    assert bad.exit_code == 2 and "checksum mismatch" in bad.output


# ---------------------------------------------------------------- checks before the model loads


@pytest.fixture
def no_model_loads(monkeypatch):
    """Fail the test if anything tries to load model weights."""
    import tpembed.models

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before a check that should have failed first")

    monkeypatch.setattr(tpembed.models, "load_model_with_progress", refuse)
    monkeypatch.setattr(tpembed.models, "load_model", refuse)


def test_run_offline_fails_in_seconds_before_any_model_loads(fresh, no_model_loads, monkeypatch):
    monkeypatch.setenv("TPEMBED_DATA_URL", _closed_port_url())
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["run", "smollm2-135m-tp", "--limit", "2"])
    assert time.perf_counter() - start < 10
    assert result.exit_code == 2, result.output
    assert "\nerror: no SentEval data found and download of" in result.output
    assert "--data DIR" in result.output and "tpembed data download DIR" in result.output
    assert not (fresh / "converted").exists()
    for command in (["eval", "--limit", "2"], ["sweep", "--limit", "2", "--out", str(fresh.parent / "sweep")]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2 and "tpembed data download DIR" in result.output, result.output


def test_bad_output_path_fails_before_the_data_is_fetched(fresh, hub, senteval_tar, tmp_path, monkeypatch):
    hub.files["/senteval.tar"] = senteval_tar
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/senteval.tar"))
    (tmp_path / "file").write_text("")
    result = CliRunner().invoke(app, ["run", "smollm2-135m-tp", "-o", str(tmp_path / "file" / "out.json")])
    assert result.exit_code == 2 and "is not a folder" in result.output
    result = CliRunner().invoke(app, ["run", "smollm2-135m-tp", "--set", "tp_exit=3"])
    assert result.exit_code == 2 and "did you mean 'tp_exiting_index'?" in result.output
    assert hub.hits == []


def _tiny_gguf(path: Path, architecture: str, blocks: int | None) -> Path:
    """A GGUF file with metadata only (no tensors): all model_num_layers may read."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    if blocks is not None:
        writer.add_block_count(blocks)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_layer_count_comes_from_the_config_not_the_weights(tmp_path, family):
    from conftest import CONFIGS

    from tpembed.models import model_num_layers

    folder = tmp_path / family
    CONFIGS[family]().save_pretrained(folder)  # a config.json and nothing else: no weights to load
    assert model_num_layers(folder) == 4
    assert model_num_layers(_tiny_gguf(tmp_path / "m.gguf", "llama", 7), cache_dir=tmp_path / "cache") == 7
    # a config that does not say: no early check (the layers are counted after loading), no false error
    assert model_num_layers(_tiny_gguf(tmp_path / "n.gguf", "llama", None), cache_dir=tmp_path / "cache") is None
    with pytest.raises(FileNotFoundError):
        model_num_layers(tmp_path / "missing.gguf")


def test_layer_settings_are_checked_against_the_config_before_loading(tmp_path, no_model_loads):
    from conftest import CONFIGS

    folder = tmp_path / "llama"
    CONFIGS["llama"]().save_pretrained(folder)  # 4 decoder layers
    config_file = tmp_path / "c.yaml"
    config_file.write_text(f"models:\n  tiny:\n    model_name_or_path: {folder}\n    use_which_plan: tp\n"
                           "    tp_starting_index: 1\n    tp_exiting_index: 3\n")
    base = ["run", "tiny", "--config", str(config_file), "--data", str(DATA_DIR), "--limit", "2"]
    result = CliRunner().invoke(app, [*base, "--set", "output_layer=5"])
    assert result.exit_code == 2 and "output_layer=5 is out of range" in result.output, result.output
    result = CliRunner().invoke(app, [*base, "--set", "tp_exiting_index=5"])
    assert result.exit_code == 2 and "tp_exiting_index=5 is beyond" in result.output, result.output
    result = CliRunner().invoke(app, ["sweep", "--model", str(folder), "--exits", "2..6", "--data", str(DATA_DIR),
                                      "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 2 and "TP exit layers [5, 6] are invalid" in result.output, result.output


# ---------------------------------------------------------------- the whole first run, packaged model


@pytest.mark.packaged
def test_first_run_fetches_data_converts_once_and_keeps_output_quiet(fresh, hub, senteval_tar, tmp_path, monkeypatch):
    hub.files["/senteval.tar"] = senteval_tar
    monkeypatch.setenv("TPEMBED_DATA_URL", hub.url("/senteval.tar"))
    monkeypatch.setenv("TPEMBED_DATA_SHA256", hashlib.sha256(senteval_tar).hexdigest())
    first = CliRunner().invoke(app, ["run", "smollm2-135m-tp", "--limit", "2", "-o", str(tmp_path / "a.json")])
    assert first.exit_code == 0, first.output
    out = first.output
    for phase in ("downloading senteval.tar", "converting SmolLM2", "(once)", "loading smollm2-135m", "encoding",
                  "scoring", "STS-B"):
        assert phase in out, phase
    for noise in ("Loading weights", "Converting and de-quantizing", "Writing model shards"):
        assert noise not in out, noise  # the libraries' own bars stay hidden
    assert hub.hits == ["/senteval.tar"]

    args = ["run", "smollm2-135m-tp", "--limit", "2", "--quiet", "-o", str(tmp_path / "b.json")]
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "%|" not in second.output and "converting" not in second.output  # no bars at all; converted once
    assert "STS-B" in second.output
    scores = [json.loads((tmp_path / name).read_text())["scores"] for name in ("a.json", "b.json")]
    assert scores[0] == scores[1]
    assert hub.hits == ["/senteval.tar"]  # the data came from the cache
