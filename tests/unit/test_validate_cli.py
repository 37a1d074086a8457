"""``cmvoice validate``: the installed command, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.docs_examples import (
    CALLEE,
    CALLER,
    DTMF_INSTRUCTION,
    NOTIFICATION_INSTRUCTION,
    OTP_INSTRUCTION,
    with_e164_numbers,
)

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.json"))
COMMAND = Path(sys.executable).with_name("cmvoice")


def validate(
    *args: str, stdin: Any = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmvoice validate ARGS``, with ``stdin`` as JSON on standard input."""
    return subprocess.run(
        [str(COMMAND), "validate", *args],
        input=None if stdin is None else json.dumps(stdin),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        # A wide terminal, so that usage errors are not wrapped inside their box.
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def test_the_examples_directory_holds_the_three_apps() -> None:
    # Given / When / Then
    assert [path.name for path in EXAMPLES] == ["dtmf.json", "notification.json", "otp.json"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_each_example_file_is_valid_and_its_payload_is_printed(path: Path) -> None:
    # Given an example instruction file
    example = json.loads(path.read_text(encoding="utf-8"))

    # When it is validated
    result = validate(str(path))

    # Then the command succeeds and prints the JSON body CM would receive
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == with_e164_numbers(example)


def test_an_invalid_instruction_on_stdin_exits_1_naming_each_error_and_its_field() -> None:
    # Given a notification with three broken rules, on standard input
    bad = {
        "callee": "0612345678",
        "caller": CALLER,
        "prompt": "Your parcel arrives today.",
        "prompt-type": "Text",
        "max-replays": 5,
    }

    # When it is validated
    result = validate("-", stdin=bad)

    # Then it fails, prints each error with its field, no payload, and no full number
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert sorted(line.split(":")[0] for line in errors) == ["callee", "max-replays", "prompt-type"]
    assert "international number" in result.stderr
    assert "less than or equal to 3 (got 5)" in result.stderr
    assert "0612345678" not in result.stderr


@pytest.mark.parametrize(
    ("kind", "example"),
    [
        ("notification", NOTIFICATION_INSTRUCTION),
        ("otp", OTP_INSTRUCTION),
        ("dtmf", DTMF_INSTRUCTION),
    ],
)
def test_kind_names_the_app_explicitly(kind: str, example: dict[str, Any]) -> None:
    # Given a documented instruction and its kind
    # When it is validated with --kind
    result = validate("-", "--kind", kind, stdin=example)

    # Then
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == with_e164_numbers(example)


def test_kind_overrides_what_the_fields_suggest() -> None:
    # Given a notification validated as an OTP instruction
    # When
    result = validate("-", "--kind", "otp", stdin=NOTIFICATION_INSTRUCTION)

    # Then the OTP rules apply: no code, and notification-only fields refused
    assert result.returncode == 1
    assert "invalid otp instruction" in result.stderr
    assert "code: Field required" in result.stderr
    assert "prompt: Extra inputs are not permitted" in result.stderr


def test_an_unknown_kind_is_a_usage_error() -> None:
    # Given / When
    result = validate("-", "--kind", "sms", stdin=NOTIFICATION_INSTRUCTION)

    # Then
    assert result.returncode == 2
    assert "--kind" in result.stderr


def test_a_list_of_instructions_prints_each_payload_in_order() -> None:
    # Given one instruction of each app in a file-like list
    instructions = [OTP_INSTRUCTION, NOTIFICATION_INSTRUCTION, DTMF_INSTRUCTION]

    # When
    result = validate("-", stdin=instructions)

    # Then every payload is printed, in the same order
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [with_e164_numbers(item) for item in instructions]


def test_a_list_with_one_bad_instruction_exits_1_and_says_which_one() -> None:
    # Given a list whose second instruction has a national callee
    instructions = [NOTIFICATION_INSTRUCTION, {**OTP_INSTRUCTION, "callee": "0612345678"}]

    # When
    result = validate("-", stdin=instructions)

    # Then
    assert result.returncode == 1
    assert "instruction 2: invalid otp instruction" in result.stderr
    assert "instruction 1" not in result.stderr
    assert "callee:" in result.stderr


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    # Given a CSV file where JSON was expected
    (tmp_path / "calls.csv").write_text(f"callee,caller\n{CALLEE},{CALLER}\n", encoding="utf-8")

    # When
    result = validate("calls.csv", cwd=tmp_path)

    # Then
    assert result.returncode != 0
    assert "calls.csv is not JSON" in result.stderr
    assert result.stdout == ""


def test_values_that_look_like_markup_are_printed_as_text() -> None:
    # Given an instruction whose bad value looks like rich markup
    body = {"callee": "+31612345678", "caller": "+31761234567", "prompt": "x", "prompt-type": "[/]"}

    # When it is validated
    result = validate("-", stdin=body)

    # Then the error quotes the value as it is, with no crash
    assert result.returncode == 1
    assert "prompt-type" in result.stderr
    assert "'[/]'" in result.stderr
    assert "Traceback" not in result.stderr
