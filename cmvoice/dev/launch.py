"""``python -m cmvoice.dev.launch DEV_PID MODULE [ARG...]``: a part of ``cmvoice dev``.

Runs ``python -m MODULE ARG...`` in this process, held by its lifeline: it (and what it forks)
dies with the ``cmvoice dev`` process DEV_PID. Nothing imports this module; it only runs.
"""

from __future__ import annotations

import runpy
import sys

from cmvoice.dev.lifeline import hold


def main(argv: list[str]) -> None:
    dev_pid, module, *args = argv
    hold(int(dev_pid))
    # What `python -m MODULE` would see: its own file as argv[0] (runpy sets it), then ARGs.
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
