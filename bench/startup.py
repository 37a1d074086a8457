"""CLI start-up: wall time of ``cmvoice --help``, ``cmvoice send --help`` and a real
``cmvoice send`` (one notification queued in a private Redis), next to a bare interpreter start
in the same run.

Each round runs every command once, in turn (so a noisy moment hits them alike); the figures are
medians and 90th percentiles over the rounds. Bytecode is cached first, as a pip-installed
package has it (``PYTHONDONTWRITEBYTECODE`` is cleared for the children). Figures only; nothing
is asserted. Target (the on-call issue): under 0.5 s for ``--help`` and ``send``.

The wall time swings with the shared machine's load (a bare interpreter start by a third and
more between runs); ``--instructions`` also counts each command's instructions once under
valgrind's callgrind (where valgrind is installed), a figure that does not move with the load
and compares commits.

Run: ``python -m bench startup [--rounds 15] [--instructions]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.measure import median, percentile
from bench.processes import CMVOICE, env_with
from cmvoice.embedded_redis import EmbeddedRedis

TARGET_S = 0.5
CALLER = "+31761234567"


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from spawning ``args`` to its exit, and the CPU seconds (user + system) it
    used, which a busy neighbour disturbs less; a failed command stops the benchmark."""
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{args[1:3]} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    return elapsed, _children_cpu_s() - cpu_before


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def instructions(args: list[str], env: dict[str, str]) -> int:
    """Instructions ``args`` executes, counted by callgrind (run once: the count is stable)."""
    callgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run([*callgrind, *args], env=env, capture_output=True, check=True)
    found = re.search(rb"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no count from callgrind: {done.stderr.decode()[-500:]}")
    return int(found.group(1))


def commands(round_no: int) -> dict[str, list[str]]:
    """What each round runs; every send calls a number of its own (no rule refuses it)."""
    send = [CMVOICE, "send", "notification", "--caller", CALLER, "--prompt", "Your parcel."]
    return {
        "python -c pass (baseline)": [sys.executable, "-c", "pass"],
        "cmvoice --help": [CMVOICE, "--help"],
        "cmvoice send --help": [CMVOICE, "send", "--help"],
        "cmvoice send notification": [*send, "--callee", f"+316{30000000 + round_no:08d}"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=sys.argv[0], description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    parser.add_argument(
        "--instructions", action="store_true", help="also count instructions (valgrind)"
    )
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="cmvoice-bench-") as tmp,
        EmbeddedRedis(data_dir=Path(tmp) / "redis", persistent=False) as server,
    ):
        env = env_with(
            {
                "redis_url": server.url,
                "broker_url": server.url,
                "data_dir": Path(tmp) / "data",
                "callback_secret": "startup-bench-secret-0123456789abcdefghijkl",
            }
        )
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPATH"] = os.pathsep.join(sys.path)
        times: dict[str, list[float]] = {name: [] for name in commands(0)}
        cpu: dict[str, list[float]] = {name: [] for name in commands(0)}
        for command in commands(-1).values():  # warm-up: bytecode and the disk cache
            timed(command, env)
        for round_no in range(args.rounds):
            for name, command in commands(round_no).items():
                wall, cpu_s = timed(command, env)
                times[name].append(wall)
                cpu[name].append(cpu_s)
        counted: dict[str, int] = {}
        if args.instructions and shutil.which("valgrind"):
            counted = {name: instructions(command, env) for name, command in commands(-2).items()}
        elif args.instructions:
            print("--instructions: valgrind is not installed; counts skipped")
    baseline = median(times["python -c pass (baseline)"])
    print(f"{args.rounds} rounds; seconds per command: wall median, p90, CPU median;")
    print(f"target: wall median < {TARGET_S} s")
    for name, values in times.items():
        middle = median(values)
        verdict = "" if "baseline" in name else ("  met" if middle < TARGET_S else "  NOT met")
        print(
            f"  {name:28} {middle:.3f}  p90 {percentile(values, 0.9):.3f}"
            f"  CPU {median(cpu[name]):.3f}  (baseline + {middle - baseline:.3f}){verdict}"
        )
    for name, count in counted.items():
        print(f"  {name:28} {count / 1e6:,.0f}M instructions (callgrind)")
