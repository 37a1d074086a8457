"""Children of ``cmvoice dev`` die with it, even when it is killed with SIGKILL: no orphans.

Two mechanisms, because each misses cases the other covers:

- the kernel's parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``), set in each child
  between fork and exec (``die_with``), and in every process a Python part forks
  (``hold_forks``: Celery's beat is a fork of the worker). It fires at once;
- a thread in each Python part that looks at its parent twice a second (``watch_parent``):
  for platforms without PR_SET_PDEATHSIG (macOS), and for a parent killed between fork and
  prctl. Redis runs no code of ours: without PR_SET_PDEATHSIG it outlives a killed dev, and
  the next ``cmvoice dev`` uses it (it answers on the same port).

Which signal (see ``PART_DEATH_SIGNAL`` and ``REDIS_DEATH_SIGNAL``): a dev that died cannot
run its stop sequence (SIGTERM, wait, SIGKILL, Redis last) any more, so what the children get
must end them without anyone waiting on them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

#: What the Python parts (simulator, receiver, worker, its beat, Flower) get when dev dies:
#: SIGKILL. A SIGTERM would start a worker's warm shutdown that nobody bounds any more (dev is
#: gone) while Redis and the simulator vanish under it; the parts are built to survive SIGKILL
#: (late acks, messages given back after the visibility timeout, the ledger's claims), and it
#: frees their ports at once for the next ``cmvoice dev``.
PART_DEATH_SIGNAL = signal.SIGKILL
#: What Redis gets: SIGTERM. Redis holds the queue and the ledger; on SIGTERM it writes out and
#: fsyncs its append-only file, then exits within milliseconds (it waits on nobody). SIGKILL
#: could lose the writes of its last second.
REDIS_DEATH_SIGNAL = signal.SIGTERM
#: The module that runs a Python part held by its lifeline (``python -m`` it; never import it).
LAUNCHER = "cmvoice.dev.launch"
#: Seconds between two looks at the parent, for platforms without PR_SET_PDEATHSIG.
WATCH_INTERVAL_S = 0.5

#: prctl(2) option: the signal this process gets when the thread that created it exits.
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Looked up once, here: a child between fork and exec should run as little as possible.
_prctl = _load_prctl()


def set_death_signal(signum: int) -> bool:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux only).

    False where the platform has no PR_SET_PDEATHSIG. The kernel sends it when the *thread*
    that forked this process exits, not the process: fork from the main thread.
    """
    if _prctl is None:
        return False
    return _prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0


def die_with(parent_pid: int, signum: int) -> Callable[[], None]:
    """A ``preexec_fn`` for Popen: the child gets ``signum`` when ``parent_pid`` dies.

    Popen runs it in the child between fork and exec; the setting survives the exec.
    """

    def in_child() -> None:
        set_death_signal(signum)
        # The parent died before prctl: nobody will send the signal, so do not start at all.
        if os.getppid() != parent_pid:
            os._exit(1)

    return in_child


def watch_parent(parent_pid: int, signum: int = PART_DEATH_SIGNAL) -> threading.Thread:
    """A daemon thread that sends ``signum`` to this process once ``parent_pid`` is no longer
    its parent (an orphan is given to PID 1 or a subreaper, so its parent pid changes)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCH_INTERVAL_S)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=watch, name="cmvoice-dev-lifeline", daemon=True)
    thread.start()
    return thread


def hold(parent_pid: int, signum: int = PART_DEATH_SIGNAL) -> None:
    """Make this process, and every process it forks, die with ``parent_pid``.

    Called first thing in each Python part of ``cmvoice dev`` (``cmvoice.dev.launch``).
    """
    set_death_signal(signum)
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)
    watch_parent(parent_pid, signum)
    hold_forks(signum)


class _Forks:
    """What a forked child needs to know about the process that forked it."""

    #: This process's pid; a forked child reads it before updating it: its parent's pid.
    pid = os.getpid()
    #: Whether the current fork happens in the parent's main thread (set just before it).
    from_main_thread = True


def hold_forks(signum: int = PART_DEATH_SIGNAL) -> None:
    """Every process this one forks from now on dies with it (Celery's beat: a fork of the worker).

    A fork inherits no parent-death signal and no thread, so both are set up again in it.
    """
    _Forks.pid = os.getpid()

    def before() -> None:
        _Forks.from_main_thread = threading.current_thread() is threading.main_thread()

    def after_in_child() -> None:
        parent_pid, _Forks.pid = _Forks.pid, os.getpid()
        # PR_SET_PDEATHSIG fires when the forking *thread* ends: only safe from the main one.
        # A fork from another thread relies on the watch, which follows the parent process.
        if _Forks.from_main_thread:
            set_death_signal(signum)
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signum)
        watch_parent(parent_pid, signum)

    os.register_at_fork(before=before, after_in_child=after_in_child)
