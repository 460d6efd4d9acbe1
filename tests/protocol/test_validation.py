"""Field rules: user and room names, message text, passwords."""

from __future__ import annotations

import pytest

from zchat.protocol.errors import (
    InvalidName,
    InvalidPassword,
    InvalidRange,
    InvalidRequest,
    InvalidText,
    TextTooLong,
)
from zchat.protocol.limits import (
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    MAX_TEXT_BYTES,
    MIN_PASSWORD_CHARS,
)
from zchat.protocol.validation import (
    check_msg_id,
    check_name,
    check_new_name,
    check_password,
    check_seq_range,
    check_text,
    name_key,
    name_skeleton,
)

# --- names -------------------------------------------------------------------------------------


def test_the_limits_are_the_documented_ones() -> None:
    assert (MAX_NAME_CHARS, MAX_TEXT_BYTES) == (32, 4096)
    assert (MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS) == (8, 1024)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "alice",
        "Alice_99",
        "room-1.test",
        "prachi",
        "Ñandú",
        "房间",
        "Zoë",
        "Ωμέγα",
        "मेरा",
        "🎉party",
        "x" * MAX_NAME_CHARS,
        "房" * MAX_NAME_CHARS,
    ],
)
def test_valid_names_pass(name: str) -> None:
    check_name("user", name)


def test_empty_name_is_refused() -> None:
    with pytest.raises(InvalidName):
        check_name("room", "")


def test_a_name_of_33_characters_is_refused() -> None:
    check_name("room", "x" * 32)
    with pytest.raises(InvalidName):
        check_name("room", "x" * 33)


def test_name_length_counts_characters_not_bytes() -> None:
    check_name("room", "房" * 32)  # 96 bytes of UTF-8
    with pytest.raises(InvalidName):
        check_name("room", "房" * 33)


@pytest.mark.parametrize(
    "char",
    [
        " ",
        "\t",
        "\n",
        "\r",
        "\x0b",
        "\x0c",
        "\u00a0",  # no-break space
        "\u2003",  # em space
        "\u3000",  # ideographic space
        "\u2028",  # line separator
        "\u2029",  # paragraph separator
        "\u1680",  # ogham space mark
    ],
    ids=lambda char: f"U+{ord(char):04X}",
)
def test_whitespace_in_a_name_is_refused(char: str) -> None:
    for name in (f"al{char}ice", f"{char}alice", f"alice{char}", char):
        with pytest.raises(InvalidName):
            check_name("user", name)


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x01", "\x1b", "\x7f", "\x85", "\x9b"],
    ids=lambda char: f"U+{ord(char):04X}",
)
def test_control_characters_in_a_name_are_refused(char: str) -> None:
    with pytest.raises(InvalidName):
        check_name("user", f"al{char}ice")


@pytest.mark.parametrize(
    "char",
    [
        "\u200b",  # zero width space
        "\u200c",  # zero width non-joiner
        "\u200d",  # zero width joiner
        "\u2060",  # word joiner
        "\ufeff",  # byte order mark
        "\u00ad",  # soft hyphen
        "\u202e",  # right-to-left override
        "\u2066",  # left-to-right isolate
        "\u061c",  # arabic letter mark
    ],
    ids=lambda char: f"U+{ord(char):04X}",
)
def test_invisible_format_characters_in_a_name_are_refused(char: str) -> None:
    with pytest.raises(InvalidName):
        check_name("user", f"ali{char}ce")


@pytest.mark.parametrize(
    "char",
    ["\ue000", "\U000f0000", "\ud800", "\udfff", "\u0378", "\U000e0001"],
    ids=lambda char: f"U+{ord(char):04X}",
)
def test_private_use_surrogate_and_unassigned_characters_are_refused(char: str) -> None:
    with pytest.raises(InvalidName):
        check_name("user", f"alice{char}")


@pytest.mark.parametrize(
    "name",
    ["e\u0301", "cafe\u0301", "Ñandu\u0301", "\u212b", "A\u030a"],
    ids=ascii,
)
def test_a_name_not_in_normal_form_c_is_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        check_name("user", name)


def test_the_composed_form_of_a_refused_name_passes() -> None:
    check_name("user", "\u00e9")
    check_name("user", "caf\u00e9")


def test_the_error_names_the_field() -> None:
    with pytest.raises(InvalidName, match="room"):
        check_name("room", "")
    with pytest.raises(InvalidName, match="user"):
        check_name("user", "a b")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("STRASSE", "straße"),
        ("Strasse", "STRAẞE"),
        ("ÑANDÚ", "ñandú"),
        ("ΟΔΟΣ", "οδος"),
        ("οδος", "οδοσ"),
        ("Room1", "rOOM1"),
    ],
)
def test_names_that_differ_only_in_case_share_a_key(first: str, second: str) -> None:
    assert name_key(first) == name_key(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [("alice", "alicia"), ("alice", "alice1"), ("ñandú", "nandu"), ("room", "rooms")],
)
def test_different_names_have_different_keys(first: str, second: str) -> None:
    assert name_key(first) != name_key(second)


def test_name_key_keeps_plain_lowercase_as_is() -> None:
    assert name_key("房间") == "房间"
    assert name_key("alice") == "alice"


# --- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "hi",
        "x",
        " padded ",
        "tab\tseparated",
        "two\nlines",
        "\n\tindented",
        "5€ 🎉 房间",
        "\u200b visible too",
        "x" * MAX_TEXT_BYTES,
    ],
    ids=ascii,
)
def test_valid_text_passes(text: str) -> None:
    check_text(text)


@pytest.mark.parametrize("text", ["", " ", "\n", "\t \n ", "\u3000", "\u00a0\u2003"], ids=ascii)
def test_empty_or_whitespace_only_text_is_refused(text: str) -> None:
    with pytest.raises(InvalidText):
        check_text(text)


def test_text_of_exactly_4096_bytes_passes_and_4097_is_too_long() -> None:
    check_text("x" * 4096)
    with pytest.raises(TextTooLong) as caught:
        check_text("x" * 4097)
    assert type(caught.value) is TextTooLong


def test_text_length_counts_utf8_bytes() -> None:
    check_text("€" * 1365 + "x")  # 4096 bytes
    with pytest.raises(TextTooLong):
        check_text("€" * 1366)  # 1366 characters, 4098 bytes
    check_text("🎉" * 1024)  # 4096 bytes
    with pytest.raises(TextTooLong):
        check_text("🎉" * 1024 + "x")


@pytest.mark.parametrize(
    "char",
    ["\x1b", "\x00", "\x07", "\x08", "\r", "\x0b", "\x0c", "\x7f", "\x85", "\x9b"],
    ids=lambda char: f"U+{ord(char):04X}",
)
def test_control_characters_other_than_tab_and_newline_are_refused(char: str) -> None:
    with pytest.raises(InvalidText) as caught:
        check_text(f"before{char}after")
    assert type(caught.value) is InvalidText


def test_a_terminal_escape_sequence_is_refused() -> None:
    with pytest.raises(InvalidText):
        check_text("hello \x1b[2J\x1b[31mgotcha")


@pytest.mark.parametrize("char", ["\ud800", "\udfff"], ids=ascii)
def test_a_lone_surrogate_is_refused(char: str) -> None:
    with pytest.raises(InvalidText):
        check_text(f"half{char}pair")


# --- passwords ---------------------------------------------------------------------------------


def test_password_of_7_characters_is_refused_and_8_passes() -> None:
    with pytest.raises(InvalidPassword):
        check_password("x" * 7)
    check_password("x" * 8)


def test_password_of_1024_characters_passes_and_1025_is_refused() -> None:
    check_password("x" * 1024)
    with pytest.raises(InvalidPassword):
        check_password("x" * 1025)


def test_password_length_counts_characters_not_bytes() -> None:
    with pytest.raises(InvalidPassword):
        check_password("é" * 7)  # 14 bytes, 7 characters
    check_password("€" * 1024)  # 3072 bytes, 1024 characters


@pytest.mark.parametrize(
    "password",
    ["        ", "correct horse", "\x1b[2Jpass", "\u043f\u0430\u0440\u043e\u043b\u044c12"],
)
def test_anything_else_about_a_password_is_the_users_choice(password: str) -> None:
    check_password(password)


def test_empty_password_is_refused() -> None:
    with pytest.raises(InvalidPassword):
        check_password("")


@pytest.mark.parametrize("name", ["\u3164", "a\u2800b", "\uffa0x", "\u0301abc"])
def test_names_that_render_blank_or_start_with_a_mark_are_refused(name: str) -> None:
    with pytest.raises(InvalidName):
        check_name("user", name)


@pytest.mark.parametrize(
    ("from_seq", "to_seq"), [(0, 5), (-3, 5), (10, 9), (1, 2**63), (-(2**63), -1)]
)
def test_bad_history_ranges_are_invalid_range(from_seq: int, to_seq: int) -> None:
    with pytest.raises(InvalidRange):
        check_seq_range(from_seq, to_seq)


@pytest.mark.parametrize(("from_seq", "to_seq"), [(1, 1), (1, 2**63 - 1), (40, 90)])
def test_good_history_ranges_pass(from_seq: int, to_seq: int) -> None:
    check_seq_range(from_seq, to_seq)


@pytest.mark.parametrize("msg_id", ["", "a", "0123456789abcdef" * 4, "id-42_x.y"])
def test_message_ids_that_pass(msg_id: str) -> None:
    check_msg_id(msg_id)


@pytest.mark.parametrize("msg_id", ["x" * 65, "naïve", "tab\there", "line\n", "\x1b[0m"])
def test_message_ids_that_are_refused(msg_id: str) -> None:
    with pytest.raises(InvalidRequest):
        check_msg_id(msg_id)


# --- names that pass for others, or for the client's own words ---------------------------------


@pytest.mark.parametrize(
    ("existing", "look_alike"),
    [
        ("prashant", "pr\u0430shant"),  # Cyrillic a
        ("bob", "b\u043eb"),  # Cyrillic o
        ("paypal", "paypaI"),  # capital I for l
        ("alice", "\uff41lice"),  # fullwidth a
        ("george", "ge0rge"),  # zero for o
        ("modern", "rnodern"),  # rn for m
        ("Alice", "alice"),  # case
        ("omega", "\u03bfmega"),  # Greek omicron
    ],
)
def test_look_alike_names_share_a_skeleton(existing: str, look_alike: str) -> None:
    assert name_skeleton(existing) == name_skeleton(look_alike)


@pytest.mark.parametrize(
    ("first", "second"), [("alice", "alicia"), ("bob", "bop"), ("ab", "a-b"), ("x", "x\u0301")]
)
def test_names_that_look_different_have_different_skeletons(first: str, second: str) -> None:
    assert name_skeleton(first) != name_skeleton(second)


@pytest.mark.parametrize(
    "name",
    [
        "you",
        "YOU",
        "y0u",
        "y\u043eu",
        "(history)",
        "(direct)",
        "\uff08history\uff09",
        "(x",
        "alice\u2192you",
    ],
)
def test_the_clients_own_words_are_reserved_for_new_names(name: str) -> None:
    check_name("user", name)  # an existing one still works
    with pytest.raises(InvalidName, match="reserved"):
        check_new_name("user", name)


@pytest.mark.parametrize("name", ["pr\u0430shant", "abc\u03b4", "\u0430dmin", "a\u05d0"])
def test_a_new_name_mixing_scripts_is_refused(name: str) -> None:
    check_name("user", name)
    with pytest.raises(InvalidName, match="mixes scripts"):
        check_new_name("user", name)


@pytest.mark.parametrize(
    "name",
    ["alice", "young", "yours", "m\u00fcller", "\u041f\u0440\u0438\u0432\u0435\u0442",
     "\u65e5\u672c\u8a9e\u30c6\u30b9\u30c8", "tanaka\u7530\u4e2d", "kim\uae40",
     "user_42", "\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae"],
)  # fmt: skip
def test_single_script_and_latin_with_cjk_new_names_pass(name: str) -> None:
    check_new_name("user", name)


@pytest.mark.parametrize(
    "text",
    ["\u3164", "\u3164\u3164\u3164", "\u2800", "\u2800 \u2800", "\u115f\u1160", "\uffa0",
     "\u200b", "\u200b\u200d\u2060", "\u00ad", "\ufeff", "\u0301\u0301", "\ufe0f",
     "\u3000", "\u2028", "\n\t\u3164"],
)  # fmt: skip
def test_text_of_invisible_characters_only_is_refused(text: str) -> None:
    with pytest.raises(InvalidText):
        check_text(text)


@pytest.mark.parametrize("text", ["\u3164a", "\u2800.", "\u00e9", "\U0001f600", "\u200bhi"])
def test_text_with_something_visible_passes(text: str) -> None:
    check_text(text)
