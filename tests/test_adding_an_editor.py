"""docs/adding-an-editor.md, followed as written: its Python blocks, run in order in one namespace,
define and register a toy editor, build it with make_editor and put it on a leaderboard row (micro
world). The editor is unregistered afterwards, so no other test sees it."""
import re
from pathlib import Path

import pytest

from editbench.core import EDITORS, editor_names

DOC = Path(__file__).resolve().parents[1] / "docs" / "adding-an-editor.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_page_has_the_file_the_hparams_and_the_row():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) == 3
    assert "@register_editor(\"one_step\")" in blocks[0] and "make_editor" in blocks[1]
    assert "editbench.run(\"one_step\"" in blocks[2]


@pytest.mark.integration
def test_the_toy_editor_goes_from_its_file_to_a_leaderboard_row(micro_world):
    namespace = {"__name__": "adding_an_editor_doc"}
    try:
        for block in python_blocks(DOC.read_text()):
            exec(compile(block, str(DOC), "exec"), namespace)  # the doc's own asserts check each step
        assert "one_step" in editor_names()
        row = namespace["row"]
        assert row["seconds_per_edit"] > 0 and row["score"] is not None
    finally:
        EDITORS.remove("one_step")
    assert "one_step" not in editor_names()
