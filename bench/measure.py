"""What the benchmarks measure besides time: CPU of a process tree, Redis commands, queues."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench.processes import descendants

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and of every process below it (Linux).

    Running children (``cmvoice worker --beat`` runs beat as one) are read one by one; those
    that ended and were waited for are in the parent's cutime/cstime.
    """
    ticks = 0
    for member in {pid} | descendants(pid):
        try:
            text = (Path("/proc") / str(member) / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        # Fields 14-17 (utime, stime, cutime, cstime): 12-15 after the command name, which
        # may hold spaces, so split after its closing parenthesis.
        fields = text[text.rindex(")") + 2 :].split()
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS_PER_S


@dataclass(frozen=True)
class RedisCommands:
    """Commands Redis ran so far: the total (INFO stats; commands run by Lua scripts count
    too) and calls per command (INFO commandstats)."""

    total: int
    by_command: Counter[str]

    @classmethod
    def read(cls, client: redis.Redis) -> RedisCommands:
        total = int(client.info("stats")["total_commands_processed"])
        by_command: Counter[str] = Counter()
        for name, values in client.info("commandstats").items():
            by_command[name.removeprefix("cmdstat_")] = int(values["calls"])
        return cls(total, by_command)

    def since(self, before: RedisCommands) -> RedisCommands:
        return RedisCommands(self.total - before.total, self.by_command - before.by_command)

    def without(self, command: str, count: int) -> RedisCommands:
        """These commands less ``count`` of ``command`` (the benchmark's own sampling)."""
        by_command = Counter(self.by_command)
        by_command[command] -= count
        return RedisCommands(self.total - count, +by_command)

    def split(self, per: int, top: int = 12) -> str:
        """The most run commands, per ``per`` calls: ``evalsha 4.0, hset 2.1, ...``."""
        parts = [f"{name} {count / per:.2f}" for name, count in self.by_command.most_common(top)]
        rest = sum(self.by_command.values()) - sum(
            count for _, count in self.by_command.most_common(top)
        )
        if rest:
            parts.append(f"others {rest / per:.2f}")
        return ", ".join(parts)


@dataclass
class QueueSampler:
    """Samples the length of some lists (queues) every ``every_s`` in a thread of its own."""

    client: redis.Redis
    queues: Sequence[str]
    every_s: float = 0.1
    peaks: dict[str, int] = field(default_factory=dict)
    peak_total: int = 0
    #: LLEN commands this sampler sent: they are subtracted from the commands counted.
    commands: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> QueueSampler:
        self.peaks = dict.fromkeys(self.queues, 0)
        self._thread = threading.Thread(target=self._run, name="queue-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            pipe = self.client.pipeline(transaction=False)
            for queue in self.queues:
                pipe.llen(queue)
            lengths = [int(length) for length in pipe.execute()]
            self.commands += len(lengths)
            for queue, length in zip(self.queues, lengths, strict=True):
                self.peaks[queue] = max(self.peaks[queue], length)
            self.peak_total = max(self.peak_total, sum(lengths))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def wait_until(condition: Callable[[], object], timeout_s: float, every_s: float = 0.05) -> bool:
    """Poll ``condition()`` until true or ``timeout_s``; returns whether it came true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every_s)
    return bool(condition())
