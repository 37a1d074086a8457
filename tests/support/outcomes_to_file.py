"""A result task for ``cmvoice dev --include``: it appends each outcome to a file a test reads.

The worker imports it as ``tests.support.outcomes_to_file`` (the test puts the repository on
its PYTHONPATH); the file is named by an environment variable the worker inherits from dev.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cmvoice.worker import app

#: The task's name, for CMVOICE_RESULT_TASKS.
RESULT_TASK = "tests.append_outcome_to_file"
#: Environment variable naming the file (JSON lines, one outcome each).
OUTCOMES_FILE_ENV = "TEST_OUTCOMES_FILE"


@app.task(name=RESULT_TASK)
def append_outcome_to_file(outcome: dict[str, Any]) -> None:
    with Path(os.environ[OUTCOMES_FILE_ENV]).open("a", encoding="utf-8") as file:
        file.write(json.dumps(outcome) + "\n")


def read_outcomes(path: Path) -> list[dict[str, Any]]:
    """The outcomes the task has written so far (none while the file does not exist)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]
