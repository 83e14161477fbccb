"""docs/configuration.md is generated from the option table and must be up to date."""

from pathlib import Path

from midge.config import docs
from midge.config import options as opts

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_committed_reference_is_up_to_date():
    assert DOC.read_text() == docs.render(), (
        "docs/configuration.md is stale: run `python -m midge.config.docs > docs/configuration.md`")


def test_every_option_and_alias_documented():
    text = docs.render()
    for opt in opts.OPTIONS:
        assert f"`{opt.name}`" in text
        for alias in opt.aliases:
            assert f"`{alias}`" in text


def test_differences_section_present():
    assert "## Where midge differs from Mosquitto" in docs.render()
