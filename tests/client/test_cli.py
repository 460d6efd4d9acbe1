"""The CLI's small decisions: where the password comes from, when to colour."""

from __future__ import annotations

import io
from pathlib import Path

import click
import pytest

from zchat.client import cli


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_password_file_wins_and_only_its_first_line_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZCHAT_PASSWORD", "from-the-environment")
    secret = tmp_path / "secret"
    secret.write_text("from the file \nsecond line\n")
    assert cli.read_password(secret) == "from the file "


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZCHAT_PASSWORD", "from-the-environment")
    assert cli.read_password(None) == "from-the-environment"
    monkeypatch.setenv("ZCHAT_PASSWORD", "")
    assert cli.read_password(None) is None


def test_an_empty_password_file_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(click.UsageError):
        cli.read_password(empty)


@pytest.mark.parametrize(
    ("terminal", "no_color", "expected"),
    [(True, None, True), (True, "1", False), (True, "", True), (False, None, False)],
)
def test_colour_only_on_a_terminal_without_no_color(
    monkeypatch: pytest.MonkeyPatch, terminal: bool, no_color: str | None, expected: bool
) -> None:
    monkeypatch.setattr("sys.stdout", FakeTerminal() if terminal else io.StringIO())
    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert cli.wants_colour() is expected
