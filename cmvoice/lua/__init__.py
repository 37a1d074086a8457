"""Lua scripts, loaded by name from this package's ``.lua`` files, each after ``_prelude.lua``.

A script runs atomically inside Redis: every compare-and-set of the ledger, the limits and the
pacer is one (docs/architecture.md, "Where each invariant is enforced").
"""

from __future__ import annotations

import functools
from importlib.resources import files

from redis import Redis
from redis.commands.core import Script

PRELUDE = "_prelude"


@functools.cache
def source(name: str) -> str:
    """The text Redis runs for script ``name``: the shared prelude, then the script."""
    package = files(__name__)
    prelude = package.joinpath(f"{PRELUDE}.lua").read_text(encoding="utf-8")
    body = package.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return f"{prelude}\n{body}"


def load(client: Redis, name: str) -> Script:
    """Script ``name`` registered on ``client`` (run by its SHA, loaded on first use)."""
    return client.register_script(source(name))
