"""psk_file: identity:hexkey lines, whole file refused on a bad key (reference 3.10)."""

from __future__ import annotations

import pytest

from midge.security.psk import PskFileError, hex_to_key, load_psk_file, parse_psk


def test_keys_and_line_rules():
    text = "# comment\n\nno colon\n id1 : 00ff \nid2:abc\nid3:DEADbeef\n"
    assert parse_psk(text) == {"id1": b"\x00\xff", "id2": b"\x0a\xbc", "id3": b"\xde\xad\xbe\xef"}


def test_odd_digits_get_a_leading_zero_nibble():
    assert hex_to_key("f") == b"\x0f"
    assert hex_to_key("0001") == b"\x00\x01"  # leading zero bytes are kept


@pytest.mark.parametrize("line", ["id:xyz", "id:12 34", "id:"])
def test_one_bad_key_refuses_the_file(line):
    with pytest.raises(PskFileError, match="psk:2:"):
        parse_psk(f"ok:00\n{line}\n", "psk")


def test_missing_file(tmp_path):
    with pytest.raises(PskFileError, match="Unable to open psk_file"):
        load_psk_file(str(tmp_path / "none"))
