"""Campaign rows: stable instruction ids, spreadsheet-safe cells, and reading in chunks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cmvoice.campaigns.model import CAMPAIGN_NAMESPACE, chunks, instruction_id_for, spreadsheet_safe


def test_a_rows_instruction_id_is_the_same_on_every_run() -> None:
    # Given / When the id of one row is computed twice
    first = instruction_id_for("20261126-1f2e3d4c", 17)
    again = instruction_id_for("20261126-1f2e3d4c", 17)

    # Then it is the same UUID, derived from the campaign and the line
    assert first == again
    assert first == str(uuid.uuid5(CAMPAIGN_NAMESPACE, "20261126-1f2e3d4c/17"))
    assert uuid.UUID(first).version == 5


def test_instruction_ids_differ_per_line_and_per_campaign() -> None:
    # Given a thousand lines of two campaigns
    ids = {
        instruction_id_for(campaign_id, line)
        for campaign_id in ("20261126-1f2e3d4c", "20261126-aaaaaaaa")
        for line in range(1, 501)
    }

    # Then no two rows share an id
    assert len(ids) == 1000


def test_line_and_campaign_cannot_be_confused_in_the_id() -> None:
    # Given a campaign id that ends in digits, and a line that could continue it
    # When / Then: "a/12" and "a1/2" are different rows
    assert instruction_id_for("a", 12) != instruction_id_for("a1", 2)


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("+31612345678", "+31612345678"),
        ("-5", "-5"),
        ("plain text", "plain text"),
        ("", ""),
        ("a=b", "a=b"),
        (42, "42"),
        (None, "None"),
    ],
)
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(
    cell: object, shown: str
) -> None:
    # Given a value from a campaign file, written to an errors file or report
    # When / Then: = and @ are quoted; + and - stay, phone numbers start with +
    assert spreadsheet_safe(cell) == shown


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [
        (0, 3, []),
        (1, 3, [1]),
        (3, 3, [3]),
        (7, 3, [3, 3, 1]),
        (9, 3, [3, 3, 3]),
        (5, 1, [1, 1, 1, 1, 1]),
        (4, 10, [4]),
    ],
)
def test_chunks_hold_size_items_and_the_last_one_the_rest(
    count: int, size: int, sizes: list[int]
) -> None:
    # Given `count` items
    # When they are read in chunks of `size`
    parts = list(chunks(range(count), size))

    # Then each chunk is full but the last, and nothing is lost or reordered
    assert [len(part) for part in parts] == sizes
    assert [item for part in parts for item in part] == list(range(count))


def test_chunks_read_no_further_ahead_than_the_chunk_they_give() -> None:
    # Given an endless source that records how far it was read
    read: list[int] = []

    def source() -> Iterator[int]:
        number = 0
        while True:
            read.append(number)
            yield number
            number += 1

    # When the first chunk of 4 is taken
    first = next(chunks(source(), 4))

    # Then exactly 4 items were read
    assert first == [0, 1, 2, 3]
    assert read == [0, 1, 2, 3]
