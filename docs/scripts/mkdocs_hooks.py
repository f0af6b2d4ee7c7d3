"""MkDocs hooks for the tpembed site (named in mkdocs.yml ``hooks:``).

* ``<!-- cli-reference -->`` in a page becomes the reference of every ``tpembed`` command, made
  from the typer app at build time by typer's own Markdown generator (what ``typer tpembed.cli
  utils docs`` prints), so it is never hand-copied. (mkdocs-click drops every option of a typer
  >= 0.24 app, whose click is vendored, and mkdocs-typer2 fails on help texts holding ``<PST>``.)
* ``<!-- settings-table -->`` in a page becomes the table of every EncoderConfig setting.
* The Results section lists ``results/index.md`` first, then every other page under
  ``docs/results/`` (the topic pages, generated from result JSONs) in the order the summary lists
  them, so a new topic page appears in the navigation without editing mkdocs.yml.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

def result_topics(docs: Path) -> list[str]:
    """The topic pages under docs/results/: in the order results/index.md links them (its "Topics"
    list first), then the rest by file name."""
    folder = docs / "results"
    pages = {p.name for p in folder.glob("*.md") if p.name != "index.md"}
    index = folder / "index.md"
    text = index.read_text(encoding="utf-8") if index.is_file() else ""
    topics = re.search(r"^## Topics\n(.*?)(?=^## |\Z)", text, re.S | re.M)  # the summary's list of topics first
    links = r"\]\(([\w.-]+\.md)(?:#[^)]*)?\)"
    linked = (re.findall(links, topics.group(1)) if topics else []) + re.findall(links, text)
    ordered = [name for name in dict.fromkeys(linked) if name in pages]
    ordered += sorted(pages - set(ordered))
    return [f"results/{name}" for name in ordered]


def on_config(config: Any) -> Any:
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
        default = {"`True`": "`true`", "`False`": "`false`"}.get(default, default)  # as YAML spells them
        description = html.escape(field.description or "", quote=False).replace("|", "\\|")
        rows.append(
            f"| `{name}` | {default} | {'yes' if name in vectors else 'no'} | "
            f"{'yes' if name in searchable else ''} | {description} |"
        )
    return "\n".join(rows)


CLI_MARKER = "<!-- cli-reference -->"


def _escape_outside_code(line: str) -> str:
    """``<PST>`` and friends in help texts are text, not HTML: escape them outside code spans."""
    parts = line.split("`")
    return "`".join(html.escape(part, quote=False) if i % 2 == 0 else part for i, part in enumerate(parts))


def _path_below_root(root: Any, group: Any) -> list[str]:
    """The names from the root command down to ``group`` (empty for the root)."""
    for name, sub in getattr(root, "commands", {}).items():
        if sub is group:
            return [name]
        below = _path_below_root(sub, group)
        if below:
            return [name, *below]
    return []


def cli_reference() -> str:
    """Markdown for every tpembed command, from the typer app (typer's own docs generator)."""
    import typer
    from typer.cli import get_docs_for_click

    from tpembed.cli import app

    command = typer.main.get_command(app)
    text = get_docs_for_click(obj=command, ctx=typer.Context(command, info_name="tpembed"), name="tpembed")
    out, fenced, group = [], False, command
    for line in text.strip().splitlines():
        entry = re.match(r"\* `([\w-]+)`: ", line)
        if line.startswith("```"):
            fenced = not fenced
            out.append(line)
        elif fenced:
            out.append(line)
        elif line.startswith("#"):
            out.append("#" + line)  # the page's own title is the only h1
            path = re.findall(r"[\w-]+", line.split("`")[1]) if "`" in line else []
            group = command
            for part in path[1:]:
                group = getattr(group, "commands", {}).get(part, group)
        elif entry and entry.group(1) in getattr(group, "commands", {}):
            # a subcommand: a link to its section, with its whole one-line help (typer cuts it short)
            name = entry.group(1)
            anchor = "-".join(["tpembed", *_path_below_root(command, group), name])
            short = group.commands[name].get_short_help_str(limit=300)
            out.append(f"* [`{name}`](#{anchor}): {_escape_outside_code(short)}")
        else:
            out.append(_escape_outside_code(line))
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if SETTINGS_MARKER in markdown:
        markdown = markdown.replace(SETTINGS_MARKER, settings_table())
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown
