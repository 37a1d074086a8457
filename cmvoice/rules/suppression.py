"""The suppression (opt-out) list: numbers that must not be called, kept as keyed hashes.

``cmvoice suppress add|remove|list|import|check`` and ``cmvoice.suppress()`` /
``cmvoice.unsuppress()`` edit it; every enqueue and every dispatch checks it. Redis holds the
keyed hash of each number (cmvoice.rules.enforce.number_hash) and its masked form for
``suppress list``, never the number itself.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cmvoice.errors import FieldError
from cmvoice.instructions import normalize_number
from cmvoice.privacy import mask_number
from cmvoice.replies import as_text
from cmvoice.rules.enforce import number_hash
from cmvoice.runtime import Runtime, get_runtime

#: Numbers written per Redis round trip by an import.
IMPORT_CHUNK = 1000


@dataclass(frozen=True)
class SuppressedNumber:
    """One entry of the list as it can be shown: masked, with when and how it was added."""

    masked: str
    added_at_ms: int
    source: str


def parse_number(text: str) -> str:
    """The number in E.164, or ValueError naming the rule (as instructions check callees)."""
    return normalize_number(text)


class SuppressionList:
    """The deployment's suppression list in Redis."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.redis = runtime.redis
        self.key = runtime.keys.suppressed()

    def add(self, numbers: Iterable[str], *, source: str = "api") -> int:
        """Suppress numbers (E.164 or 00...); returns how many were not suppressed before.

        Raises:
            ValueError: a number is not a valid international number (nothing is added).
        """
        normalized = [parse_number(number) for number in numbers]
        now_ms = self.runtime.ledger.server_time_ms()
        entries = {
            number_hash(self.runtime, number): json.dumps(
                {"masked": mask_number(number), "added_at": now_ms, "source": source}
            )
            for number in normalized
        }
        if not entries:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for digest, entry in entries.items():
            pipe.hsetnx(self.key, digest, entry)
        return sum(1 for created in pipe.execute() if created)

    def remove(self, numbers: Iterable[str]) -> int:
        """Take numbers off the list; returns how many were on it."""
        digests = [number_hash(self.runtime, parse_number(number)) for number in numbers]
        return int(self.redis.hdel(self.key, *digests)) if digests else 0

    def contains(self, number: str) -> bool:
        return bool(self.redis.hexists(self.key, number_hash(self.runtime, parse_number(number))))

    def entries(self) -> Iterator[SuppressedNumber]:
        """Every entry, masked, oldest first."""
        found = []
        for _, raw in self.redis.hscan_iter(self.key, count=IMPORT_CHUNK):
            data = json.loads(as_text(raw))
            found.append(SuppressedNumber(data["masked"], int(data["added_at"]), data["source"]))
        yield from sorted(found, key=lambda entry: entry.added_at_ms)

    def __len__(self) -> int:
        return int(self.redis.hlen(self.key))

    def import_file(self, path: Path) -> tuple[int, list[tuple[int, FieldError]]]:
        """Numbers from a file (one per line, or a CSV with a ``callee`` column); returns how
        many were added and the lines refused, each with why (the rest are added)."""
        added = 0
        errors: list[tuple[int, FieldError]] = []
        batch: list[str] = []
        for line, text in _numbers_in(path):
            try:
                batch.append(parse_number(text))
            except ValueError as exc:
                errors.append((line, FieldError("callee", str(exc), mask_number(text))))
                continue
            if len(batch) >= IMPORT_CHUNK:
                added += self.add(batch, source=f"import {path.name}")
                batch = []
        added += self.add(batch, source=f"import {path.name}")
        return added, errors


def _numbers_in(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each number in the file: CSV with a callee column, or one per line."""
    with path.open(encoding="utf-8-sig", newline="") as file:
        first = file.readline()
        file.seek(0)
        header = [cell.strip().lower() for cell in next(csv.reader([first]), [])]
        if "callee" in header:
            column = header.index("callee")
            for line, row in enumerate(csv.reader(file), start=1):
                if line > 1 and len(row) > column and row[column].strip():
                    yield line, row[column].strip()
            return
        for line, text in enumerate(file, start=1):
            if text.strip():
                yield line, text.strip()


def suppress(*numbers: str) -> int:
    """Put numbers on the suppression list: no call to them is placed any more.

    For a DTMF opt-out acted on from a result hook, for example (outcomes carry no number:
    your application knows whom it asked cmvoice to call)::

        @cmvoice.on_result
        def opt_out(outcome: cmvoice.CallOutcome) -> None:
            if outcome.digits == "9":
                cmvoice.suppress(customers.phone_for_call(outcome.root_instruction_id))

    Returns how many were not on it before.
    """
    return SuppressionList(get_runtime()).add(numbers, source="suppress()")


def unsuppress(*numbers: str) -> int:
    """Take numbers off the suppression list; returns how many were on it."""
    return SuppressionList(get_runtime()).remove(numbers)
