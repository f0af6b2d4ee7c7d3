"""MkDocs hooks for the tpembed site (named in mkdocs.yml ``hooks:``).

* ``docs/scripts`` goes on ``sys.path`` so mkdocs-click can import ``cli_command`` (the typer app
  as a click command) for the generated CLI reference.
* ``<!-- settings-table -->`` in a page becomes the table of every EncoderConfig setting.
* The Results section lists ``results/index.md`` first, then every other page under
  ``docs/results/`` (the topic pages, generated from result JSONs) in the order the summary links
  them, so a new topic page appears in the navigation without editing mkdocs.yml.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent


def result_topics(docs: Path) -> list[str]:
    """The topic pages under docs/results/: in the order results/index.md links them, then the rest
    by file name."""
    folder = docs / "results"
    pages = {p.name for p in folder.glob("*.md") if p.name != "index.md"}
    index = folder / "index.md"
    linked = re.findall(r"\]\(([\w.-]+\.md)(?:#[^)]*)?\)", index.read_text(encoding="utf-8")) if index.is_file() else []
    ordered = [name for name in dict.fromkeys(linked) if name in pages]
    ordered += sorted(pages - set(ordered))
    return [f"results/{name}" for name in ordered]


def on_config(config: Any) -> Any:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    docs = Path(config["docs_dir"])
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Results" in item and isinstance(item["Results"], list):
            listed = {entry if isinstance(entry, str) else next(iter(entry.values())) for entry in item["Results"]}
            item["Results"].extend(page for page in result_topics(docs) if page not in listed)
    return config


SETTINGS_MARKER = "<!-- settings-table -->"


def settings_table() -> str:
    """Every EncoderConfig field as a Markdown table, from the registry itself (config.py)."""
    from tpembed.config import EncoderConfig, searchable_settings, vector_settings

    vectors, searchable = set(vector_settings()), set(searchable_settings())
    rows = ["| setting | default | changes vectors | tuned by `search` | what it does |", "|---|---|---|---|---|"]
    for name, field in EncoderConfig.model_fields.items():
        default = "`null`" if field.default is None else f"`{field.default!r}`".replace("'", "")
        description = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{name}` | {default} | {'yes' if name in vectors else 'no'} | "
            f"{'yes' if name in searchable else ''} | {description} |"
        )
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    return markdown
