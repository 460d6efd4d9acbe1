"""Field rules shared by both ends: names, message text and passwords.

Each check returns nothing and raises the typed error that names the field, so
the broker can refuse a request with a precise, stable error code.
"""

from __future__ import annotations

import re
import unicodedata

import disarm

from .errors import (
    InvalidName,
    InvalidPassword,
    InvalidRange,
    InvalidRequest,
    InvalidText,
    TextTooLong,
)
from .limits import (
    MAX_MSG_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_PASSWORD_CHARS,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    MIN_PASSWORD_CHARS,
)

_FORBIDDEN_IN_NAMES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
_BLANK_LOOKING = frozenset("\u115f\u1160\u2800\u3164\uffa0")
"""Letters and symbols that render as nothing (Hangul fillers, the blank Braille pattern)."""
_TEXT_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 and C1 controls except tab and newline, and lone surrogates (a regex: texts are long)."""
_VISIBLE_ASCII = re.compile("[!-~]")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"})
"""Controls, format characters, separators and marks: nothing of their own to see.
(Unassigned is not among them: it may be a character newer than this Python's tables.)"""

RESERVED_NAMES = ("you",)
"""Words the client prints where a name goes (``you → bob``); its other marks are in
parentheses (``(history)``, ``(direct)``), so no name may start with one either."""
_CLIENT_MARKS = ("\u2192",)
"""What the client prints between names (``alice → you``): a name holding it could pass
for the line of a direct message."""
_CJK_WITH_LATIN = (
    frozenset({"Latin", "Han", "Hiragana", "Katakana"}),
    frozenset({"Latin", "Han", "Bopomofo"}),
    frozenset({"Latin", "Han", "Hangul"}),
)
"""The script sets UTS #39's Highly Restrictive level allows beside a single script."""


def check_name(field: str, value: str) -> None:
    """User and room names: 1-32 characters, NFC, no whitespace or invisible characters.

    Invisible and control characters are refused so two names that look the same
    on screen cannot both exist, and a name can never carry a terminal escape.
    """
    if not value:
        raise InvalidName(f"{field} must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidName(f"{field} is longer than {MAX_NAME_CHARS} characters")
    if value.isascii() and value.isprintable() and " " not in value:
        return  # the common case, without the Unicode tables: printable ASCII but the space
    if unicodedata.normalize("NFC", value) != value:
        raise InvalidName(f"{field} must be in Unicode normal form C")
    if unicodedata.category(value[0]).startswith("M"):
        raise InvalidName(f"{field} must not start with a combining mark")
    for char in value:
        if (
            char.isspace()
            or char in _BLANK_LOOKING
            or unicodedata.category(char) in _FORBIDDEN_IN_NAMES
        ):
            raise InvalidName(
                f"{field} must not contain whitespace or control characters "
                f"(found U+{ord(char):04X})"
            )


def name_key(name: str) -> str:
    """The form two names are compared in: ``Alice`` and ``alice`` are one name."""
    return name.casefold()


def name_skeleton(name: str) -> str:
    """The form two names are compared in for looking alike: ``prashant`` and
    ``pr\u0430shant`` (a Cyrillic a), ``paypal`` and ``paypaI``, ``m`` and ``rn`` share one.

    The UTS #39 skeleton, from ``disarm`` (``skeleton_key`` with TR39's digit
    classes, so ``l``/``1``/``I`` and ``O``/``0`` fold together), which also folds
    case. Why that library: it is maintained (Unicode 17 tables, frequent
    releases), ships wheels so ``pip install`` needs no compiler, and computes a
    skeleton, which is what makes "is this name confusable with any existing one"
    one indexed lookup. The alternatives fall short of that: ``confusable-homoglyphs``
    only answers pairwise questions from pair tables that lose the direction of the
    mapping and every multi-character prototype; ``confusables`` has Unicode 13 data
    and no skeleton; ICU (PyICU) is the reference but must be compiled against the
    system's ICU. disarm deliberately leaves out TR39's ``m`` -> ``rn``; it is put
    back here. The version is pinned because stored skeletons depend on its tables:
    a newer one needs a migration that recomputes them.
    """
    return (disarm.skeleton_key(name, digit_policy="tr39") or name_key(name)).replace("m", "rn")


def check_new_name(field: str, value: str) -> None:
    """A name being created (registered, or a room made) must also pass for itself.

    On top of `check_name`: no word the client prints where a name goes (``you``,
    or anything starting with a parenthesis, like ``(history)``), nor anything
    that looks like one, nor the arrow it prints between names; and one writing
    system only, UTS #39's Highly Restrictive level: a single script, or Latin
    with Han and Japanese kana, Bopomofo or Hangul. So ``pr\u0430shant`` (Latin
    with a Cyrillic a) is refused, ``日本語テスト`` and ``müller`` are not. (Names
    already stored keep working; their look-alikes are refused through the skeleton.)
    """
    check_name(field, value)
    skeleton = name_skeleton(value)
    if (
        skeleton.startswith("(")
        or skeleton in _RESERVED_SKELETONS
        or any(mark in skeleton for mark in _CLIENT_MARKS)
    ):
        raise InvalidName(f"{field} {value!r} is reserved: the client prints it as its own word")
    if value.isascii():
        return
    if disarm.is_mixed_script(value):
        scripts = {script.value for script in disarm.detect_scripts(value)}
        if not any(scripts <= allowed for allowed in _CJK_WITH_LATIN):
            raise InvalidName(
                f"{field} mixes scripts ({', '.join(sorted(scripts))}); use one writing system"
            )


def check_text(value: str) -> None:
    """Message text: 1 to 4096 UTF-8 bytes, something visible; tab and newline the only controls.

    Escape and other control characters would let a sender drive the
    recipients' terminals, so they are refused, not stripped.
    """
    if not _has_visible(value):
        raise InvalidText("text must not be empty or only invisible characters")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise TextTooLong(f"text is {size} bytes; the limit is {MAX_TEXT_BYTES}")
    control = _TEXT_CONTROLS.search(value)
    if control is not None:
        raise InvalidText(f"text must not contain control character U+{ord(control.group()):04X}")


def _has_visible(text: str) -> bool:
    """Whether any character of ``text`` shows something: not only whitespace, format
    characters, marks, or letters that render blank (the Hangul filler, Braille blank)."""
    if _VISIBLE_ASCII.search(text):
        return True  # the common case, without the Unicode tables
    return any(
        char not in _BLANK_LOOKING
        and not char.isspace()
        and unicodedata.category(char) not in _INVISIBLE_CATEGORIES
        for char in text
    )


def check_msg_id(value: str) -> None:
    """A client's message id: empty (none), or 1-64 printable ASCII characters."""
    if len(value) > MAX_MSG_ID_CHARS or not (value.isascii() and value.isprintable()):
        raise InvalidRequest(
            f"msg_id must be at most {MAX_MSG_ID_CHARS} printable ASCII characters"
        )


def check_seq_range(from_seq: int, to_seq: int) -> None:
    """An inclusive range of sequence numbers: 1 <= from_seq <= to_seq <= 2**63-1."""
    if from_seq < 1:
        raise InvalidRange(f"from_seq must be at least 1, not {from_seq}")
    if to_seq < from_seq:
        raise InvalidRange(f"to_seq ({to_seq}) is before from_seq ({from_seq})")
    if to_seq > MAX_SEQ:
        raise InvalidRange(f"to_seq must be at most {MAX_SEQ}")


def check_password(value: str) -> None:
    """Passwords: 8 to 1024 characters; anything else about them is the user's choice."""
    if len(value) < MIN_PASSWORD_CHARS:
        raise InvalidPassword(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(value) > MAX_PASSWORD_CHARS:
        raise InvalidPassword(f"password must be at most {MAX_PASSWORD_CHARS} characters")


_RESERVED_SKELETONS = frozenset(name_skeleton(word) for word in RESERVED_NAMES)
