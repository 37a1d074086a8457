"""Checks of ``cmvoice dev``: free ports before it starts, each part's readiness after."""

from __future__ import annotations

import socket
from collections.abc import Callable

import requests

from cmvoice.dev.plan import HOST, DevPlan
from cmvoice.errors import CmVoiceError
from cmvoice.worker import app as celery_app

#: Seconds one readiness probe may take: the supervisor probes again soon after.
PROBE_TIMEOUT_S = 1.0
#: Seconds the worker gets to answer one ping.
PING_TIMEOUT_S = 0.5


class DevStackError(CmVoiceError):
    """A part of ``cmvoice dev`` could not start, or stopped when it should not have."""


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something already listens on ``host:port`` (or holds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers that will bind it: a port left in TIME_WAIT is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def check_ports(plan: DevPlan) -> None:
    """Fail before starting anything when a port is taken, naming the option that moves it."""
    wanted = plan.ports()
    ports = [port for port, _, _ in wanted]
    for port, option, part in wanted:
        if ports.count(port) > 1:
            raise DevStackError(f"port {port} is given to two parts; change {option}")
        if port_in_use(port):
            raise DevStackError(
                f"port {port} is already in use on {HOST}, so {part} cannot listen there; "
                f"stop what uses it or pick another port with {option}"
            )


def readiness_checks(plan: DevPlan) -> dict[str, Callable[[], bool]]:
    """One check per part, by name: True once the part does its job."""
    return {
        "simulator": lambda: http_ok(f"{plan.simulator_url}/_sim/health"),
        "receiver": lambda: http_ok(f"{plan.receiver_url}/healthz"),
        "worker": lambda: worker_answers(plan.worker_name),
        "flower": lambda: flower_sees_worker(plan),
    }


def http_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=PROBE_TIMEOUT_S).status_code == 200
    except requests.RequestException:
        return False


def worker_answers(worker_name: str) -> bool:
    replies = celery_app.control.ping(destination=[worker_name], timeout=PING_TIMEOUT_S)
    return bool(replies)


def flower_sees_worker(plan: DevPlan) -> bool:
    """Up is not enough: Flower must receive the worker's events (its heartbeats), or the tasks
    sent before it subscribed would never show in its task list."""
    try:
        answer = requests.get(
            f"{plan.flower_url}/api/workers",
            params={"status": "true"},
            auth=(plan.flower_user, plan.flower_password),
            timeout=PROBE_TIMEOUT_S,
        )
        return answer.status_code == 200 and answer.json().get(plan.worker_name) is True
    except (requests.RequestException, ValueError):
        return False
