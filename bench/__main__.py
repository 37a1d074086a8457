"""``python -m bench [NAME ...]``: run every benchmark module of this package (or the named ones).

A benchmark is a module of ``bench/`` with a ``main()``; each runs in a process of its own, so
one benchmark's settings (Celery reads its broker once per process) cannot leak into the next.
Figures are printed, never asserted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


def benchmark_names() -> list[str]:
    """Modules of this package that define a top-level ``main()``, in name order.

    Read from the source, not imported: a helper module may do work at import.
    """
    names = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
            names.append(path.stem)
    return names


def main() -> int:
    available = benchmark_names()
    wanted = sys.argv[1:] or available
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(available)}")
        return 2
    failed = []
    for name in wanted:
        print(f"== bench.{name}", flush=True)
        code = f"import bench.{name} as b; b.main()"
        if subprocess.run([sys.executable, "-c", code], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
