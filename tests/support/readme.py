"""The README's sections and code blocks, for the tests that keep it true (and run its code)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str, text: str = README) -> str:
    """The text under ``## title``, up to the next section of the same level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"the README has a '## {title}' section"
    return match.group(1)


def code_blocks(language: str, text: str = README) -> list[str]:
    """Every fenced block of ``language`` (``""``: blocks without one), in order."""
    blocks: list[str] = []
    opened: str | None = None
    lines: list[str] = []
    for line in text.splitlines(keepends=True):
        fence = line.rstrip("\n")
        if opened is None and fence.startswith("```"):
            opened, lines = fence[3:].strip(), []
        elif opened is not None and fence == "```":
            if opened == language:
                blocks.append("".join(lines))
            opened = None
        elif opened is not None:
            lines.append(line)
    return blocks


def code_block(language: str, containing: str, text: str = README) -> str:
    """The one block of ``language`` in ``text`` that contains ``containing``."""
    found = [block for block in code_blocks(language, text) if containing in block]
    assert len(found) == 1, f"one ```{language} block with {containing!r}, found {len(found)}"
    return found[0]


def shell_command(block: str, program: str) -> tuple[dict[str, str], list[str]]:
    """The command line of ``block`` that runs ``program``: its leading ``NAME=value``
    assignments and its argv (continued lines joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        assignments = {}
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            name, value = words.pop(0).split("=", 1)
            assignments[name] = value
        if words and words[0].endswith(program):
            return assignments, words
    raise AssertionError(f"no {program!r} command in:\n{block}")
