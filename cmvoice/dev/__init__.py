"""``cmvoice dev``: Redis, the simulator, the receiver, a worker and Flower as child processes."""

from cmvoice.dev.plan import (
    DEFAULT_DEMO_TIMEOUT_S,
    DEFAULT_FLOWER_PORT,
    DEMO_TIME_SCALE,
    DevOptions,
)
from cmvoice.dev.supervisor import run_dev

__all__ = [
    "DEFAULT_DEMO_TIMEOUT_S",
    "DEFAULT_FLOWER_PORT",
    "DEMO_TIME_SCALE",
    "DevOptions",
    "run_dev",
]
