"""The README's generated parts stay in step with the code."""

import re
from pathlib import Path

from qepi.config import reference_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_config_reference_is_up_to_date():
    text = README.read_text()
    block = re.search(r"<!-- config-reference:start -->\n(.*?)<!-- config-reference:end -->", text, re.S)
    assert block, "README.md lost its config-reference markers"
    assert block.group(1) == reference_markdown(), (
        "README config reference is stale: paste the output of `qepi config reference` between the markers")


def test_readme_shows_the_setup_commands():
    text = README.read_text()
    assert "make test" in text and "make demo" in text
