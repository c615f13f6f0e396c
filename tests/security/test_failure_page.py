"""A failed execution's page opens with its error, which the notebook (so its caller) chose:
that text and every other piece of the block stay text, never markup or script."""

from __future__ import annotations

import nbformat
import pytest

from nbplane.apis.parameters import parameters_display
from nbplane.notebooks.pages import Failure, failure_block, notebook_page

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</pre></div><script>alert(2)</script>",
    "&lt;script&gt; already escaped",
    "javascript:alert(3)",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_the_failure_block_escapes_every_field(text: str) -> None:
    failure = Failure(title=text, where=text, error=f"ValueError: {text}", details=(text,))
    block = failure_block(failure)
    assert "<script" not in block and "<img" not in block and "</pre></div>" not in block
    assert block.count("<div") == block.count("</div>") == 1
    page = notebook_page(nbformat.v4.new_notebook(), failure)
    assert "alert(1)</script>" not in page and "<img src=x" not in page
    assert "alert(2)</script>" not in page


@pytest.mark.parametrize("cell_id", ['x" onclick="alert(1)', "a b", "x" * 65, "../x"])
def test_a_cell_id_that_is_not_an_nbformat_id_is_not_linked(cell_id: str) -> None:
    block = failure_block(Failure("Failed", "cell 1", "E", cell_id=cell_id))
    assert "<a " not in block and "onclick" not in block


def test_the_displayed_parameters_cannot_add_code() -> None:
    """The executed notebook's parameters cell is text, but people copy it: a value cannot end
    its literal or its line."""
    for text in [*HOSTILE, '"\nimport os\n"', "'\r\x85\u2028\u2029import os", "\\"]:
        shown = parameters_display({"text": text}, {})
        assert len(shown.splitlines()) == 2
        namespace: dict[str, object] = {}
        exec(shown, namespace)  # only in this test: nbplane never runs the displayed cell
        assert namespace["text"] == text
