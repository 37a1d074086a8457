"""The errors file of ``campaign start``: one CSV line per broken rule of a row not called."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from cmvoice.campaigns.model import RowOutcome, chunks, spreadsheet_safe
from cmvoice.campaigns.store import CHUNK
from cmvoice.errors import FieldError

#: Columns of the errors file.
ERRORS_COLUMNS = ("line", "field", "rule", "value")


class ErrorsFile:
    """The errors CSV, created at the first error; on resume rebuilt from Redis first."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None
        self._writer: Any = None
        self.written = 0

    def _open(self) -> Any:
        if self._writer is None:
            self._file = self.path.open("w", newline="", encoding="utf-8")
            self._writer = csv.writer(self._file)
            self._writer.writerow(ERRORS_COLUMNS)
        return self._writer

    def rebuild(self, entries: Iterable[tuple[int, FieldError, RowOutcome]]) -> None:
        """Start the file again from the committed entries (a killed run may have written more)."""
        self._open()
        self.write(entries)

    def write(self, entries: Iterable[tuple[int, FieldError, RowOutcome]]) -> None:
        for chunk in chunks(entries, CHUNK):
            rows = [
                [line, *map(spreadsheet_safe, (error.field, error.rule, error.value))]
                for line, error, _ in chunk
            ]
            self._open().writerows(rows)
            self.written += len(rows)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
