"""docs/getting-started.md cannot go stale: its checked commands run, and every tpembed command in the docs parses.

A fenced block on that page preceded by ``<!-- test: bash -->`` or ``<!-- test: python -->`` is run
here as a user would run it (the installed ``tpembed`` command, a fresh Python process), from an
empty folder, with the SentEval data of the tests (``TPEMBED_DATA``). Install lines carry no
marker and are not run. Every ``tpembed ...`` line in a bash block of the docs' pages is also
checked against the CLI itself: the command exists and each ``--option`` is one of its options.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import DATA_DIR, REPO_ROOT

DOCS = REPO_ROOT / "docs"
PAGE = DOCS / "getting-started.md"
MARKED = re.compile(r"<!-- test: (bash|python) -->\s*\n```(\w+)\n(.*?)\n```", re.S)
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)\n\1```", re.S | re.M)
# pages other engineers generate or own; the docs' output folders hold no commands to check
NOT_CHECKED = ("results/", "changelog.md", "guides/input-rules.md", "compare/", "search/", "sweeps/")


def marked_blocks() -> list[tuple[str, str]]:
    """(kind, code) of every block the page marks for testing, in page order."""
    blocks = [(kind, code) for kind, lang, code in MARKED.findall(PAGE.read_text(encoding="utf-8"))]
    assert all(kind == "bash" or kind == "python" for kind, _ in blocks)
    return blocks


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def test_the_page_marks_the_commands_a_newcomer_runs():
    blocks = marked_blocks()
    kinds = [kind for kind, _ in blocks]
    commands = [c for kind, code in blocks if kind == "bash" for c in shell_commands(code)]
    assert "python" in kinds
    assert any(c.startswith("tpembed encode ") for c in commands)
    assert any(c.startswith("tpembed configs") for c in commands)
    assert any(c.startswith("tpembed run ") and "--limit" in c for c in commands)
    assert not any(c.startswith(("pip ", "bash ")) for c in commands), "install lines are not marked for testing"


def _environment(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TPEMBED_DATA"] = str(DATA_DIR)
    env.setdefault("COLUMNS", "120")
    return env


def _bash_cases() -> list:
    cases = []
    for kind, code in marked_blocks():
        if kind == "bash":
            cases += [pytest.param(command, id=command[:60]) for command in shell_commands(code)]
    return cases


@pytest.mark.packaged
@pytest.mark.parametrize("command", _bash_cases())
def test_a_bash_command_of_the_page_runs(command, tmp_path):
    if " run " in f" {command} " and not DATA_DIR.is_dir():
        pytest.skip(f"no SentEval data at {DATA_DIR}")
    argv = shlex.split(command)
    assert argv[0] == "tpembed", f"only tpembed commands are marked for testing: {command}"
    executable = shutil.which("tpembed")
    assert executable, "the tpembed command is not installed"
    result = subprocess.run([executable, *argv[1:]], cwd=tmp_path, env=_environment(tmp_path),
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{command}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    if argv[1] == "encode":
        assert "576" in result.stdout  # the embedding size of the packaged default model
    elif argv[1] == "configs":
        assert "smollm2-135m-tp" in result.stdout
    elif argv[1] == "run":
        assert "STS" in result.stdout


@pytest.mark.packaged
def test_the_python_snippet_of_the_page_runs(tmp_path):
    snippets = [code for kind, code in marked_blocks() if kind == "python"]
    for code in snippets:
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_environment(tmp_path),
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        assert "(2, 576)" in result.stdout


# --------------------------------------------------------------------------- every page's tpembed lines


def _docs_commands() -> list:
    cases = []
    for page in sorted(DOCS.rglob("*.md")):
        relative = page.relative_to(DOCS).as_posix()
        if relative.startswith(NOT_CHECKED):
            continue
        for _, lang, code in FENCE.findall(page.read_text(encoding="utf-8")):
            if lang not in ("bash", "sh", "shell"):
                continue
            for command in shell_commands(code):
                command = command.split(" #")[0].split(" > ")[0].strip()  # an end-of-line comment, a redirect
                if command.startswith("tpembed "):
                    cases.append(pytest.param(command, id=f"{relative}: {command[:50]}"))
    return cases


@pytest.fixture(scope="module")
def cli():
    from tpembed.cli import app

    return typer.main.get_command(app)


@pytest.mark.parametrize("command", _docs_commands())
def test_a_tpembed_line_of_the_docs_names_a_real_command_and_real_options(command, cli):
    argv = shlex.split(command)[1:]
    node = cli  # typer's click objects (newer typer vendors click: duck-typed, not click's classes)
    while getattr(node, "commands", None):
        assert argv and argv[0] in node.commands, f"{command}: no command {argv[:1]} (have {sorted(node.commands)})"
        node, argv = node.commands[argv[0]], argv[1:]
    known = {opt for param in node.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
    used = {arg.split("=")[0] for arg in argv if arg.startswith("-") and not re.fullmatch(r"-\d+(,-?\d+)*", arg)}
    unknown = sorted(used - known)
    assert not unknown, f"{command}: {node.name} has no option {unknown}"
