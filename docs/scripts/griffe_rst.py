"""A griffe extension for the API reference: tpembed's docstrings use a little reST, the site Markdown.

* Sphinx roles (``:func:`~tpembed.config.resolve_config```, ``:class:``, ``:meth:``, ``:mod:`` …)
  become code spans (the short name with ``~``, else the whole path);
* a paragraph ending in ``::`` (a reST literal block follows) ends in ``:``; the indented block
  after it is a Markdown code block as it stands;
* ``<PST>`` and other ``<word>`` texts outside code are escaped, so they show instead of being
  taken for HTML tags.

Named in mkdocs.yml (mkdocstrings' python handler, ``extensions:``).
"""

from __future__ import annotations

import html
import re
from typing import Any

from griffe import Extension, Object

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc|const):`(~?)([^`]+)`")
TAG = re.compile(r"<(/?[A-Za-z][\w-]*)>")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _outside_code(line: str) -> str:
    parts = re.split(r"(`+[^`]*`+)", line)
    return "".join(part if part.startswith("`") else TAG.sub(lambda m: html.escape(m.group(0)), part) for part in parts)


def convert(text: str) -> str:
    """The docstring's reST bits as Markdown (code blocks left as they are)."""
    out, in_block, block_indent = [], False, 0
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if in_block and line.strip() and indent <= block_indent:
            in_block = False
        if in_block or line.lstrip().startswith("```"):
            out.append(line)
            continue
        line = _outside_code(ROLE.sub(_role, line))
        if line.rstrip().endswith("::"):
            line = line.rstrip()[:-1]
            in_block, block_indent = True, indent
        out.append(line)
    return "\n".join(out)


class RstToMarkdown(Extension):
    """Rewrite every docstring once it is loaded."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
