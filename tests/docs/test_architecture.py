"""docs/architecture.md is the reference: its import direction holds in the code, and nothing
in the repository points outside it."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "cmvoice"
DOC = ROOT / "docs" / "architecture.md"


def layers() -> list[tuple[int, str]]:
    """(layer, module pattern) from the doc's "Import direction" table; ``x.*`` is a package."""
    section = DOC.read_text(encoding="utf-8").split("## Import direction", 1)[1].split("\n## ", 1)
    rows = re.findall(r"^\| (\d) [^|]+ \| (.+) \|$", section[0], flags=re.MULTILINE)
    assert rows, "the import direction table is missing"
    return [(int(layer), name) for layer, cell in rows for name in re.findall(r"`([\w.*]+)`", cell)]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "cmvoice"


def layer_of(module: str, table: list[tuple[int, str]]) -> int | None:
    for layer, pattern in table:
        if pattern == module or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
            return layer
    return None


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The cmvoice modules a file imports (names relative to the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cmvoice"):
            base = node.module.removeprefix("cmvoice").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}".lstrip(".")
                found.add(sub if sub in modules else base or "cmvoice")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cmvoice."):
                    found.add(alias.name.removeprefix("cmvoice."))
    return found


def test_every_module_has_a_layer_and_imports_only_its_own_or_lower_ones() -> None:
    # Given the layers the architecture document gives, and every module of the package
    table = layers()
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    unplaced = sorted(name for name in files if layer_of(name, table) is None)
    assert not unplaced, f"modules with no layer in docs/architecture.md: {unplaced}"

    # When each module's imports of the package are read
    upward = []
    for name, path in files.items():
        for target in imports_of(path, set(files)):
            if target == name:
                continue
            own, theirs = layer_of(name, table), layer_of(target, table)
            assert own is not None
            if theirs is None or theirs > own:
                upward.append(f"{name} (layer {own}) imports {target} (layer {theirs})")

    # Then none of them points up
    assert not upward, "\n".join(sorted(upward))


def test_nothing_in_the_repository_refers_to_files_outside_it() -> None:
    # Given every file git tracks
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()

    # Then none names the shared folder beside the repository or the original design page
    outside = re.compile(r"\.\./shared|shared/DESIGN\.md|\bDESIGN\.md\b|shared/reference")
    offenders = [
        name
        for name in tracked
        if (ROOT / name).is_file()
        and not name.startswith("cmvoice/reporting/static/")
        and outside.search((ROOT / name).read_text(encoding="utf-8", errors="replace"))
        and name != "tests/docs/test_architecture.py"
    ]
    assert not offenders, offenders
