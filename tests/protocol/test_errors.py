"""Error types, their wire codes, and agreement with the spec and the documented tree."""

from __future__ import annotations

import inspect
import re

import pytest

from tests.protocol.spec import spec_section, table_rows
from zchat.protocol import errors
from zchat.protocol.errors import (
    ERROR_TYPES,
    ErrorCode,
    ProtocolViolation,
    RequestRefused,
    ZchatError,
    error_from_wire,
)

BRANCHES = {ZchatError, ProtocolViolation, RequestRefused}
"""Classes that group errors and are never sent themselves."""


def error_classes() -> dict[str, type[ZchatError]]:
    """Every exception class defined in the errors module, by name."""
    return {
        name: value
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, ZchatError)
        and value.__module__ == errors.__name__
    }


def documented_tree() -> dict[str, str | None]:
    """Each class in the errors module docstring's tree mapped to its drawn parent."""
    doc = errors.__doc__
    assert doc is not None
    drawing = doc.split("::", 1)[1].split("\n\n")[1]
    parents: dict[str, str | None] = {}
    stack: list[str] = []
    for line in drawing.splitlines():
        match = re.match(r"^ {4}(?P<prefix>[│├└─ ]*?)(?P<name>[A-Z]\w+)\s", line + " ")
        assert match is not None, line
        depth = len(match["prefix"]) // 4
        del stack[depth:]
        parents[match["name"]] = stack[-1] if stack else None
        stack.append(match["name"])
    return parents


def test_every_code_has_exactly_one_type() -> None:
    assert set(ERROR_TYPES) == set(ErrorCode)
    assert len(set(ERROR_TYPES.values())) == len(ERROR_TYPES)


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_each_type_carries_its_own_code(code: ErrorCode) -> None:
    assert ERROR_TYPES[code].code is code
    assert ERROR_TYPES[code]("m").code is code


def test_codes_are_distinct_strings() -> None:
    members = ErrorCode.__members__
    assert len({member.value for member in members.values()}) == len(members)


def test_every_concrete_error_class_is_in_the_table() -> None:
    concrete = set(error_classes().values()) - BRANCHES
    assert concrete == set(ERROR_TYPES.values())


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_error_from_wire_rebuilds_the_type(code: ErrorCode) -> None:
    error = error_from_wire(str(code), "the message")
    assert type(error) is ERROR_TYPES[code]
    assert error.code is code
    assert error.message == "the message"
    assert str(error) == "the message"


@pytest.mark.parametrize("code", ["", "NOT_MEMBER", "not-member", "gone_fishing", "not_member "])
def test_error_from_wire_turns_an_unknown_code_into_a_plain_error(code: str) -> None:
    error = error_from_wire(code, "the message")
    assert type(error) is ZchatError
    assert "the message" in error.message


def test_every_error_is_an_exception_with_its_message() -> None:
    for error_type in ERROR_TYPES.values():
        error = error_type("it broke")
        assert isinstance(error, Exception)
        assert error.message == "it broke"
        assert error.args == ("it broke",)


def test_the_hierarchy_is_the_one_drawn_in_the_module_docstring() -> None:
    tree = documented_tree()
    classes = error_classes()
    assert set(tree) == set(classes)
    for name, parent in tree.items():
        expected = (Exception,) if parent is None else (classes[parent],)
        assert classes[name].__bases__ == expected, name


@pytest.mark.parametrize(
    ("code", "branch"),
    [
        (ErrorCode.MALFORMED_FRAME, ProtocolViolation),
        (ErrorCode.FRAME_TOO_LARGE, ProtocolViolation),
        (ErrorCode.UNSUPPORTED_VERSION, ProtocolViolation),
        (ErrorCode.UNKNOWN_OPERATION, ProtocolViolation),
        (ErrorCode.INVALID_REQUEST, ProtocolViolation),
        (ErrorCode.INVALID_NAME, ProtocolViolation),
        (ErrorCode.INVALID_TEXT, ProtocolViolation),
        (ErrorCode.TEXT_TOO_LONG, ProtocolViolation),
        (ErrorCode.INVALID_PASSWORD, ProtocolViolation),
        (ErrorCode.NOT_LOGGED_IN, RequestRefused),
        (ErrorCode.SESSION_EXPIRED, RequestRefused),
        (ErrorCode.ALREADY_LOGGED_IN, RequestRefused),
        (ErrorCode.NAME_TAKEN, RequestRefused),
        (ErrorCode.BAD_CREDENTIALS, RequestRefused),
        (ErrorCode.NOT_MEMBER, RequestRefused),
        (ErrorCode.TOO_MANY_ATTEMPTS, RequestRefused),
        (ErrorCode.RATE_LIMITED, RequestRefused),
        (ErrorCode.LIMIT_REACHED, RequestRefused),
        (ErrorCode.INTERNAL_ERROR, ZchatError),
    ],
    ids=str,
)
def test_each_code_is_blamed_on_the_right_side(code: ErrorCode, branch: type[ZchatError]) -> None:
    error_type = ERROR_TYPES[code]
    assert issubclass(error_type, branch)
    others = BRANCHES - {branch, ZchatError}
    assert not any(issubclass(error_type, other) for other in others)


def test_protocol_violations_and_refusals_do_not_overlap() -> None:
    assert not issubclass(ProtocolViolation, RequestRefused)
    assert not issubclass(RequestRefused, ProtocolViolation)


def test_codes_are_exactly_those_in_the_spec_error_table() -> None:
    documented = [row[0] for row in table_rows(spec_section("## Error codes"))]
    assert documented == [f"`{code.value}`" for code in ErrorCode]


def test_codes_in_the_spec_are_plain_snake_case() -> None:
    for row in table_rows(spec_section("## Error codes")):
        assert re.fullmatch(r"`[a-z]+(_[a-z]+)*`", row[0]), row[0]
