"""Read tables out of the protocol specification, so tests can hold the code to it."""

from __future__ import annotations

from pathlib import Path

SPEC = Path(__file__).resolve().parents[2] / "protocol" / "README.md"


def spec_section(heading: str) -> str:
    """The text under ``heading`` (a whole line such as ``## Error codes``) up to the next one."""
    text = SPEC.read_text(encoding="utf-8")
    level = heading.split(" ", 1)[0]
    lines = text.splitlines()
    start = lines.index(heading) + 1
    section = []
    for line in lines[start:]:
        marker = line.split(" ", 1)[0]
        if line.startswith("#") and set(marker) == {"#"} and len(marker) <= len(level):
            break
        section.append(line)
    return "\n".join(section)


def table_rows(section: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``section``, as stripped cells."""
    rows: list[list[str]] = []
    in_table = False
    for line in section.splitlines():
        if line.startswith("|"):
            in_table = True
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif in_table:
            break
    assert len(rows) > 2, "expected a header, a rule and at least one row"
    return rows[2:]
