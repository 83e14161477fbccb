"""Fuzz target: the mosquitto.conf parser (`midge.config`). Inputs are lines built from
the option table (every option and alias, in any scope and order) with values of the
right kind, the wrong kind, extreme numbers, odd whitespace, comments and raw bytes.

What must hold for any input: reading it gives a Config or `ConfigError`s, nothing
else; each error names the file, and the line when it comes from one. See campaign.py
for the budget and the corpus.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from midge.config import ConfigError, read_config_string
from midge.config.options import ALIASES, BY_NAME, LOG_DESTS, LOG_TYPES
from tests.fuzz.campaign import corpus, hypothesis_settings, save_found, timeout_mark, until_spent

NAME = "fuzz.conf"
NAMES = sorted(BY_NAME) + sorted(ALIASES)
# include_dir would read real folders: only a missing one.
NAMES = [name for name in NAMES if name != "include_dir"] + ["include_dir", "no_such_option"]

words = st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=20)
numbers = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 2**63]),
                    st.floats(allow_nan=True, allow_infinity=True)).map(str)
value = st.one_of(
    words, numbers,
    st.sampled_from(["true", "false", "TRUE", "yes", "0", "1", "", " ", "#", "a b c",
                     "/nonexistent/file", "127.0.0.1", "::1", "-1", "1s", "5m", "2h", "3d", "1w", "1y",
                     "$share/a/b", "#/+", "topic # both 1 a/ b/", "mqttv50", "mqttv311"]),
    st.sampled_from(LOG_DESTS + tuple(LOG_TYPES)),
    st.lists(words, min_size=2, max_size=5).map(" ".join),
)


@st.composite
def config_line(draw) -> str:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(words)                                  # anything
    if kind == 1:
        return "#" + draw(words)                            # a comment
    name = draw(st.sampled_from(NAMES))
    if name == "include_dir":
        return "include_dir /nonexistent/midge-fuzz"
    space = draw(st.sampled_from([" ", "  ", "\t", " \t "]))
    tail = draw(st.sampled_from(["", "", " ", "\r", " # trailing"]))
    return f"{draw(st.sampled_from(['', ' ', chr(9)]))}{name}{space}{draw(value)}{tail}"


configs = st.one_of(
    st.lists(config_line(), max_size=25).map("\n".join),
    st.binary(max_size=300).map(lambda data: data.decode("utf-8", "surrogateescape")),
)


def check_config(text: str) -> None:
    """Reading `text` gives a Config, or errors that name the file."""
    try:
        result = read_config_string(text, NAME)
    except ConfigError as exc:   # some errors stop the reading at once
        errors = [exc]
    else:
        errors = result.errors
        assert errors or result.config is not None
    for error in errors:
        assert isinstance(error, ConfigError)
        assert str(error), "an empty error message"
        assert NAME in str(error), f"the error does not name the file: {error}"


@timeout_mark()
def test_config_fuzz():
    @hypothesis_settings(brief_examples=200)
    @given(configs)
    def run(text):
        try:
            check_config(text)
        except Exception:
            save_found("config", ".conf", text)
            raise

    until_spent(run)


@pytest.mark.parametrize("path", corpus("config", ".conf"), ids=lambda path: path.stem)
def test_config_corpus(path):
    check_config(path.read_bytes().decode("utf-8", "surrogateescape"))
