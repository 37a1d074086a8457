"""The README stays true: its commands, its configuration table and its code snippets."""

from __future__ import annotations

import ast
import re

from tests.docs.test_compose import cmvoice_commands
from tests.support.readme import README, ROOT, code_blocks, section
from tests.support.settings_doc import documented_default, variables


def configuration_rows() -> dict[str, str]:
    """The configuration table: default cell (backticks removed) by variable."""
    rows = {}
    for line in section("Configuration").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`CMVOICE_"):
            rows[cells[0].strip("`")] = cells[1].strip("`")
    return rows


def test_the_readme_opens_with_the_two_commands() -> None:
    # Given the first code block
    first = code_blocks("sh")[0]

    # Then it is the run command and the test command, and the run command is the demo
    assert [line.split()[:2] for line in first.splitlines()] == [["make", "run"], ["make", "test"]]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:.*\n\t\$\(BIN\)/cmvoice dev --demo$", makefile, re.MULTILINE)
    assert "Status" not in README.split("## ")[0]


def test_the_configuration_table_lists_every_setting_with_its_default() -> None:
    # Given the README's table and the Settings fields
    rows = configuration_rows()
    expected = {name: documented_default(field) for name, field in variables().items()}

    # Then every setting has a row, with the default the code has, and nothing else
    assert sorted(rows) == sorted(expected), set(rows) ^ set(expected)
    wrong = {name: (rows[name], default) for name, default in expected.items()
             if rows[name] != default}  # fmt: skip
    assert not wrong, f"README default differs from the code (README, code): {wrong}"


def test_every_cmvoice_variable_the_readme_mentions_exists() -> None:
    mentioned = set(re.findall(r"\bCMVOICE_[A-Z0-9_]*[A-Z0-9]", README))
    assert mentioned <= set(variables()), mentioned - set(variables())


def test_the_python_snippets_are_valid_python() -> None:
    snippets = code_blocks("python")
    assert len(snippets) >= 4
    for snippet in snippets:
        ast.parse(snippet)


def test_the_commands_table_names_real_cmvoice_commands() -> None:
    # Given every `cmvoice <command>` in the Commands section
    named = re.findall(r"^\| `cmvoice (\w+)", section("Commands"), re.MULTILINE)

    # Then each is registered
    assert named
    assert set(named) <= set(cmvoice_commands().commands), named
