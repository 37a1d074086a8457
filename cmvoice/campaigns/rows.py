"""Rows of a campaign file (CSV or JSON lines), streamed, merged with a template, validated."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cmvoice.errors import CampaignError, FieldError, InvalidInstruction
from cmvoice.instructions import MODELS, Instruction, Voice, parse_instruction, to_cm_name
from cmvoice.privacy import quote_value

#: File formats a campaign reads.
FORMATS = ("csv", "jsonl")
#: Suffixes read as JSON lines; any other suffix (``.json`` too: it may hold an array) is
#: sniffed: a first ``{`` means JSON lines, a ``[`` is refused, anything else is CSV.
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
#: Fields a campaign sets itself: one instruction id per row, and cmvoice's signed callback URL.
CAMPAIGN_SET_FIELDS = frozenset({"instruction-id", "callback-url"})
#: Fields that must differ per row, so a template may not hold them.
PER_ROW_FIELDS = frozenset({"callee", "code"})
#: Bytes of the file's head hashed into its fingerprint (with its size): enough to notice that
#: a different file is given to ``--resume``, cheap for a large one.
FINGERPRINT_HEAD_BYTES = 1 << 20
#: The rule a row breaks when its bytes are not UTF-8 (a spreadsheet's legacy encoding).
NOT_UTF8 = "is not UTF-8 text (save the file as UTF-8, e.g. CSV UTF-8)"
#: Prefix of CSV columns holding a field of the nested voice object (``voice.language``).
VOICE_PREFIX = "voice."


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row of the file: its line number, its fields by CM name, or why it cannot be read."""

    line: int
    fields: dict[str, Any]
    problem: FieldError | None = None


def detect_format(path: Path) -> str:
    """``csv`` or ``jsonl``: from the suffix, else from the first character of the file."""
    if path.suffix.lower() == ".csv":
        return "csv"
    if path.suffix.lower() in JSONL_SUFFIXES:
        return "jsonl"
    with path.open("rb") as file:
        head = file.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        raise CampaignError(f"{path}: a JSON array; write one JSON object per line (JSON lines)")
    return "jsonl" if head.startswith(b"{") else "csv"


def fingerprint(path: Path) -> str:
    """Size and a hash of the head of the file: ``--resume`` refuses a file that changed."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        digest.update(file.read(FINGERPRINT_HEAD_BYTES))
    return f"{path.stat().st_size}:{digest.hexdigest()[:32]}"


def field_names(kind: str) -> frozenset[str]:
    """The CM names a ``kind`` row may set (not the ones a campaign sets itself)."""
    names = {to_cm_name(name) for name in MODELS[kind].model_fields}
    return frozenset(names - CAMPAIGN_SET_FIELDS)


VOICE_FIELDS = frozenset(to_cm_name(name) for name in Voice.model_fields)


def normalize_keys(data: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level names as CM spells them (``max_replays`` -> ``max-replays``)."""
    return {to_cm_name(str(key).strip()): value for key, value in data.items()}


def check_columns(kind: str, columns: Iterable[str]) -> None:
    """Refuse a header with unknown, repeated or campaign-set columns, before anything is queued.

    An unknown column is refused rather than ignored: a misspelt ``promt`` would otherwise
    silently send the template's prompt to every row.
    """
    allowed = field_names(kind)
    problems: list[str] = []
    seen: set[str] = set()
    for column in columns:
        if column in seen:
            problems.append(f"{column!r} appears twice (hyphenated and snake_case are the same)")
        seen.add(column)
        if column in CAMPAIGN_SET_FIELDS:
            problems.append(f"{column!r} is set by the campaign for every row; remove the column")
        elif column.startswith(VOICE_PREFIX):
            if to_cm_name(column.removeprefix(VOICE_PREFIX)) not in VOICE_FIELDS:
                problems.append(
                    f"{column!r} is not a voice field ({', '.join(sorted(VOICE_FIELDS))})"
                )
        elif column not in allowed:
            problems.append(f"{column!r} is not a field of a {kind} instruction")
    if "callee" not in seen:
        problems.append("no 'callee' column: each row calls its own number")
    if problems:
        raise CampaignError("the file's header cannot be used:\n  " + "\n  ".join(problems))


def load_template(kind: str, source: Mapping[str, Any] | Path | None) -> dict[str, Any]:
    """Read and check a template: known fields of ``kind``, valid values, nothing per-row.

    The values are validated once here, so a wrong template is one error, not one per row.
    """
    if source is None:
        return {}
    if isinstance(source, Path):
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CampaignError(f"template {source}: cannot be read as JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CampaignError(f"template {source}: must be a JSON object of shared fields")
        source = data
    template = normalize_keys(source)
    problems = []
    allowed = field_names(kind)
    for name in template:
        if name in CAMPAIGN_SET_FIELDS:
            problems.append(f"{name}: is set by the campaign for every row")
        elif name in PER_ROW_FIELDS:
            problems.append(f"{name}: differs per call; put it in the file, not the template")
        elif name not in allowed:
            problems.append(f"{name}: is not a field of a {kind} instruction")
    if not problems:
        try:
            parse_instruction(kind, template)
        except InvalidInstruction as exc:
            # Only the template's own fields: the others (callee...) come with each row.
            problems = [str(e) for e in exc.errors if e.field.split(".")[0] in template]
    if problems:
        raise CampaignError("the template cannot be used:\n  " + "\n  ".join(problems))
    return template


class RowValidator:
    """Merges a row over the template (the row wins) and validates it as a ``kind`` instruction."""

    def __init__(self, kind: str, template: Mapping[str, Any]) -> None:
        self.kind = kind
        self.template = dict(template)
        template_voice = self.template.get("voice")
        self._template_voice = dict(template_voice) if isinstance(template_voice, dict) else None

    def validate(self, fields: Mapping[str, Any]) -> Instruction:
        """The row as a validated instruction; InvalidInstruction names each broken rule."""
        refused = fields.keys() & CAMPAIGN_SET_FIELDS
        if refused:
            raise InvalidInstruction(
                self.kind,
                [
                    FieldError(
                        name, "is set by the campaign for every row", quote_value(fields[name])
                    )
                    for name in sorted(refused)
                ],
            )
        data = {**self.template, **fields}
        row_voice = fields.get("voice")
        if self._template_voice is not None and isinstance(row_voice, dict):
            # A row's voice.* cells change single voice fields, not the whole voice.
            data["voice"] = {**self._template_voice, **row_voice}
        return parse_instruction(self.kind, data)


class RowReader:
    """Streams the rows of a campaign file without loading it: memory stays flat in its size.

    ``position_bytes`` is how far the file has been read, for progress and for resuming at
    the byte after the last row that was enqueued.
    """

    def __init__(self, path: Path, kind: str, *, file_format: str | None = None) -> None:
        self.path = path
        self.kind = kind
        self.format = file_format or detect_format(path)
        if self.format not in FORMATS:
            raise CampaignError(f"format {self.format!r}: must be one of {', '.join(FORMATS)}")
        self.size_bytes = path.stat().st_size
        self.position_bytes = 0
        self.columns: list[str] = []
        self._physical_line = 0
        self._undecodable = False

    def _lines(self, file: BinaryIO) -> Iterator[str]:
        for raw in file:
            self.position_bytes += len(raw)
            self._physical_line += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._undecodable = True
                text = raw.decode("utf-8", errors="replace")
            if self._physical_line == 1:
                text = text.removeprefix("\ufeff")
            yield text

    @property
    def lines_read(self) -> int:
        """Physical lines of the file read so far: the last line of the last row yielded."""
        return self._physical_line

    def check_header(self) -> None:
        """Read only the header (CSV) and refuse unusable columns: before a campaign exists."""
        if self.format != "csv":
            return
        with self.path.open("rb") as file:
            self._read_header(csv.reader(self._lines(file)))
        self.position_bytes = self._physical_line = 0

    def rows(
        self, *, offset_bytes: int = 0, after_line: int = 0
    ) -> Generator[SourceRow, None, None]:
        """Rows from the start, or from ``offset_bytes`` (the start of line ``after_line + 1``)."""
        with self.path.open("rb") as file:
            lines = self._lines(file)
            if self.format == "csv":
                reader = csv.reader(lines)
                self._read_header(reader)
                yield from self._csv_rows(reader, file, offset_bytes, after_line)
            else:
                self._seek(file, offset_bytes, after_line)
                yield from self._jsonl_rows(lines)

    def _seek(self, file: BinaryIO, offset_bytes: int, after_line: int) -> None:
        if offset_bytes > self.position_bytes:
            file.seek(offset_bytes)
            self.position_bytes = offset_bytes
            self._physical_line = after_line

    def _read_header(self, reader: Iterator[list[str]]) -> None:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                self.columns = [to_cm_name(cell.strip()) for cell in cells]
                check_columns(self.kind, self.columns)
                return
        raise CampaignError(f"{self.path}: no header row (the first row names the fields)")

    def _csv_rows(
        self, reader: Iterator[list[str]], file: BinaryIO, offset_bytes: int, after_line: int
    ) -> Iterator[SourceRow]:
        self._seek(file, offset_bytes, after_line)
        # Each column's place in the instruction: a top-level field, or one of the voice's.
        targets = [
            (None, column)
            if not column.startswith(VOICE_PREFIX)
            # A voice column: its field name in CM's spelling, inside "voice".
            else ("voice", to_cm_name(column.removeprefix(VOICE_PREFIX)))
            for column in self.columns
        ]
        width = len(targets)
        last_line = self._physical_line
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line, last_line = last_line + 1, self._physical_line
                yield SourceRow(line, {}, FieldError("(row)", f"is not valid CSV ({exc})", ""))
                continue
            line, last_line = last_line + 1, self._physical_line
            undecodable, self._undecodable = self._undecodable, False
            if not cells:
                continue  # a blank line
            if undecodable:
                yield SourceRow(line, {}, FieldError("(row)", NOT_UTF8, ""))
                continue
            if len(cells) > width:
                rule = f"has {len(cells)} cells but the header names {width} fields"
                yield SourceRow(line, {}, FieldError("(row)", rule, ""))
                continue
            fields: dict[str, Any] = {}
            for (parent, name), cell in zip(targets, cells, strict=False):
                value = cell.strip()
                if not value:
                    continue  # an empty cell leaves the field unset (the template's, if any)
                if parent is None:
                    fields[name] = value
                else:
                    fields.setdefault(parent, {})[name] = value
            if fields:
                yield SourceRow(line, fields)

    def _jsonl_rows(self, lines: Iterator[str]) -> Iterator[SourceRow]:
        for text in lines:
            line = self._physical_line
            undecodable, self._undecodable = self._undecodable, False
            if not text.strip():
                continue
            if undecodable:
                yield SourceRow(line, {}, FieldError("(row)", NOT_UTF8, ""))
                continue
            try:
                data = json.loads(text)
            except ValueError as exc:
                yield SourceRow(line, {}, FieldError("(row)", f"is not valid JSON ({exc})", ""))
                continue
            if not isinstance(data, dict):
                rule = "must be a JSON object of fields"
                yield SourceRow(line, {}, FieldError("(row)", rule, f"a {type(data).__name__}"))
                continue
            yield SourceRow(line, normalize_keys(data))
