"""``python -m bench [NAME [OPTION ...]] ...``: run every benchmark module of this package (or
the named ones, each with the options that follow its name: ``python -m bench dispatch
--rounds 3``, ``python -m bench pacing --help``).

A benchmark is a module of ``bench/`` with a ``main()``; each runs in a process of its own, so
one benchmark's settings (Celery reads its broker once per process) cannot leak into the next.
Figures are printed, never asserted.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

USAGE = "usage: python -m bench [NAME [OPTION ...]] ...  (NAME --help: that benchmark's options)"


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


def plan_runs(argv: list[str], available: list[str]) -> list[tuple[str, list[str]]]:
    """(benchmark, its options) in the order given; every benchmark, without options, when
    none is named. What follows a benchmark's name, up to the next name, is its options.

    Raises:
        ValueError: an unknown benchmark, or an option before any benchmark's name.
    """
    if not argv:
        return [(name, []) for name in available]
    runs: list[tuple[str, list[str]]] = []
    for arg in argv:
        if arg in available:
            runs.append((arg, []))
        elif runs:
            runs[-1][1].append(arg)
        elif arg.startswith("-"):
            raise ValueError(f"option {arg!r} before any benchmark's name")
        else:
            raise ValueError(f"unknown benchmark {arg!r}")
    return runs


def main() -> int:
    available = benchmark_names()
    if sys.argv[1:2] in (["--help"], ["-h"]):
        print(f"{USAGE}\nbenchmarks: {', '.join(available)}")
        return 0
    try:
        runs = plan_runs(sys.argv[1:], available)
    except ValueError as exc:
        print(f"{exc}; known: {', '.join(available)}\n{USAGE}")
        return 2
    failed = []
    for name, options in runs:
        if "--help" not in options and "-h" not in options:
            print(f"== bench.{name}", flush=True)
        # The benchmark's own argparse reads sys.argv[1:]; argv[0] names it in its --help.
        code = f"import sys; sys.argv[0] = 'python -m bench {name}'; import bench.{name} as b; "
        code += "b.main(sys.argv[1:])"
        if subprocess.run([sys.executable, "-c", code, *options], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
