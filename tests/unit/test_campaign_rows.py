"""Reading campaign files: CSV and JSON lines, line numbers, templates, resuming at an offset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmvoice.campaigns.rows import RowReader, RowValidator, SourceRow, load_template
from cmvoice.errors import CampaignError, InvalidInstruction
from tests.support.stack import CALLER

TEMPLATE = {"caller": CALLER, "prompt": "Your parcel arrives today."}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows_of(path: Path, kind: str = "notification", **start: Any) -> list[SourceRow]:
    return list(RowReader(path, kind).rows(**start))


def test_csv_headers_may_be_hyphenated_or_snake_case_and_empty_cells_stay_unset(
    tmp_path: Path,
) -> None:
    # Given a CSV mixing both spellings, with empty cells
    path = write(
        tmp_path,
        "calls.csv",
        "callee,max_replays,auto-replay,prompt\n+31612345670,2,true,\n+31612345671,,, Hi \n",
    )

    # When it is read
    rows = rows_of(path)

    # Then names are CM's, empty cells are left out and cells are trimmed
    assert [(row.line, row.fields) for row in rows] == [
        (2, {"callee": "+31612345670", "max-replays": "2", "auto-replay": "true"}),
        (3, {"callee": "+31612345671", "prompt": "Hi"}),
    ]


def test_csv_cells_become_the_models_types_and_a_row_overrides_the_template(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path, "calls.csv", "callee,max-replays,auto_replay,prompt\n+31612345670,2,yes,Hello\n"
    )
    validator = RowValidator("notification", load_template("notification", TEMPLATE))

    model = validator.validate(rows_of(path)[0].fields)

    assert model.to_payload() == {
        "callee": "+31612345670",
        "caller": CALLER,
        "prompt": "Hello",
        "max-replays": 2,
        "auto-replay": True,
    }


def test_voice_columns_change_single_fields_of_the_templates_voice(tmp_path: Path) -> None:
    template = {**TEMPLATE, "voice": {"language": "en-GB", "gender": "Female", "number": 1}}
    path = write(tmp_path, "calls.csv", "callee,voice.language\n+31612345670,nl-NL\n")

    model = RowValidator("notification", template).validate(rows_of(path)[0].fields)

    assert model.to_payload()["voice"] == {"language": "nl-NL", "gender": "Female", "number": 1}


def test_line_numbers_are_the_files_own_across_blank_lines_and_multi_line_cells(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "calls.csv",
        '\ufeffcallee,prompt\n+31612345670,one\n\n+31612345671,"two\nlines"\n+31612345672,three\n',
    )

    assert [row.line for row in rows_of(path)] == [2, 4, 6]


def test_a_row_with_more_cells_than_the_header_is_a_row_error_not_a_stop(tmp_path: Path) -> None:
    path = write(tmp_path, "calls.csv", "callee\n+31612345670,extra\n+31612345671\n")

    rows = rows_of(path)

    assert rows[0].problem is not None
    assert "2 cells" in rows[0].problem.rule
    assert rows[1].fields == {"callee": "+31612345671"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("callee,promt", "'promt' is not a field of a notification instruction"),
        ("callee,instruction-id", "set by the campaign"),
        ("callee,max_replays,max-replays", "appears twice"),
        ("prompt", "no 'callee' column"),
        ("callee,voice.colour", "not a voice field"),
    ],
)
def test_an_unusable_header_is_refused_before_anything_is_queued(
    tmp_path: Path, header: str, message: str
) -> None:
    path = write(tmp_path, "calls.csv", header + "\n")

    with pytest.raises(CampaignError, match=message):
        RowReader(path, "notification").check_header()


def test_json_lines_are_read_with_their_line_numbers_and_bad_lines_reported(
    tmp_path: Path,
) -> None:
    lines = [json.dumps({"callee": "+31612345670", "max_replays": 1}), "", "{not json", "[1]"]
    path = write(tmp_path, "calls.jsonl", "\n".join(lines) + "\n")

    rows = rows_of(path)

    assert rows[0].line == 1
    assert rows[0].fields == {"callee": "+31612345670", "max-replays": 1}
    assert [(row.line, row.problem is not None) for row in rows[1:]] == [(3, True), (4, True)]


def test_reading_again_from_a_byte_offset_continues_with_the_next_row(tmp_path: Path) -> None:
    # Given a file read up to its second row, as a checkpoint records it
    path = write(
        tmp_path,
        "calls.csv",
        'callee,prompt\n+31612345670,a\n+31612345671,"b\nc"\n+31612345672,d\n',
    )
    reader = RowReader(path, "notification")
    rows = reader.rows()
    next(rows)
    next(rows)
    offset, line = reader.position_bytes, reader.lines_read
    rows.close()

    # When it is read again from there
    rest = rows_of(path, offset_bytes=offset, after_line=line)

    # Then the third row comes next, with its own line number
    assert [(row.line, row.fields["callee"]) for row in rest] == [(5, "+31612345672")]


def test_a_template_with_a_wrong_value_is_refused_once_not_per_row() -> None:
    with pytest.raises(CampaignError, match="max-replays"):
        load_template("notification", {**TEMPLATE, "max_replays": 7})


@pytest.mark.parametrize("field", ["callee", "code", "instruction-id", "callback-url"])
def test_a_template_may_not_hold_per_call_or_campaign_set_fields(field: str) -> None:
    with pytest.raises(CampaignError, match=field):
        load_template("otp", {"caller": CALLER, field: "x"})


def test_a_json_lines_row_may_not_bring_its_own_instruction_id() -> None:
    validator = RowValidator("notification", TEMPLATE)

    with pytest.raises(InvalidInstruction) as raised:
        validator.validate({"callee": "+31612345670", "instruction-id": "mine"})

    assert [error.field for error in raised.value.errors] == ["instruction-id"]
