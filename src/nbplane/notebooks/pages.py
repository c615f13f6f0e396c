"""Executed notebooks as HTML pages that open with what failed and why.

One renderer for notebook-API executions and job runs alike: the caller says what failed (a
:class:`Failure`, in words) and the page starts with it, above the cells. The block is HTML built
here from escaped text only and placed by a template extending nbconvert's ``lab`` one (a raw
cell would not do: nbconvert cleans raw HTML of its styles), so no error text, cell source or
name ever reaches the page unescaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbformat import NotebookNode

_TEMPLATE = (
    "{%- extends 'index.html.j2' -%}"
    "{%- block body_header -%}{{ super() }}{{ resources.nbplane_failure }}{%- endblock -%}"
)
_CELL_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_LINK_STYLE = "color:inherit;text-decoration:underline"
_STYLE = (
    "border:2px solid #c62828;border-radius:4px;background:#fdecea;color:#3b0d0c;"
    "padding:10px 14px;margin:8px 0 16px;font-family:system-ui,sans-serif;font-size:14px"
)


@dataclass(frozen=True)
class Failure:
    """What failed and why, for the top of the page (plain text; escaped when drawn)."""

    title: str
    """``Failed``, ``Timed out``, ``Cancelled``, ``Output schema violated``..."""
    where: str | None = None
    """The failing cell (``cell 4``, as JupyterLab counts: every cell, from 1) and, for jobs,
    the step."""
    error: str | None = None
    """``ename: evalue``, or the reason in words."""
    details: tuple[str, ...] = ()
    """One line each, e.g. every output-schema violation (``/y: expected a number``)."""
    cell_id: str | None = None
    """The failing cell's id: the block links to the cell on the page."""


def failure_block(failure: Failure) -> str:
    """The HTML of the block: every piece of text escaped."""
    head = f"<strong>{escape(failure.title)}</strong>"
    parts = []
    linked = failure.cell_id is not None and _CELL_ID.fullmatch(failure.cell_id) is not None
    if failure.where:
        where = escape(failure.where)
        if linked:
            where = f'<a href="#cell-id={failure.cell_id}" style="{_LINK_STYLE}">{where}</a>'
        head += f" at {where}"
    if linked:  # outline the failing cell itself (the lab template's id for it)
        parts.append(
            f'<style>[id="cell-id={failure.cell_id}"]'
            "{outline:2px solid #c62828;outline-offset:2px}</style>"
        )
    parts.append(f"<p style='margin:0'>{head}</p>")
    if failure.error:
        parts.append(
            "<pre style='white-space:pre-wrap;margin:6px 0 0;font-size:13px'>"
            f"{escape(failure.error)}</pre>"
        )
    if failure.details:
        items = "".join(f"<li><code>{escape(line)}</code></li>" for line in failure.details)
        parts.append(f"<ul style='margin:6px 0 0'>{items}</ul>")
    return f'<div class="nbplane-failure" role="alert" style="{_STYLE}">{"".join(parts)}</div>'


def notebook_page(notebook: NotebookNode, failure: Failure | None, title: str = "") -> str:
    """``notebook`` as nbconvert's lab page, opened by ``failure`` when there is one."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"nbplane-page.html.j2": _TEMPLATE})],
        template_file="nbplane-page.html.j2",
    )
    resources = {
        "metadata": {"name": title or "Notebook"},
        "nbplane_failure": failure_block(failure) if failure is not None else "",
    }
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    return str(body)
