"""Keys: every Redis key under the deployment's prefix, none shared between two prefixes."""

from __future__ import annotations

import inspect
import re
from importlib.resources import files

import pytest
from pydantic import ValidationError

from cmvoice.config import Settings
from cmvoice.keyspace import DEFAULT_KEY_PREFIX, Keys

#: What a key builder gets for each of its arguments below.
ARGUMENT = "x1"
#: Prefixes side by side, some of which start like each other.
PREFIXES = (DEFAULT_KEY_PREFIX, "cmvoice-staging", "cmvoice.eu", "c", "C", "tenant_42")
#: A Lua expression that builds a key from the script's ``prefix``: prefix .. ':call:' .. id
_LUA_KEY = re.compile(
    r"\bprefix((?:\s*\.\.\s*(?:'[^']*'|\([^()]*\)|[A-Za-z_]\w*(?:\[[^\]]*\])?))+)"
)
_LUA_TERM = re.compile(r"'[^']*'|\([^()]*\)|[A-Za-z_]\w*(?:\[[^\]]*\])?")


def builders() -> dict[str, inspect.Signature]:
    """Every public key builder of Keys, by name."""
    return {
        name: inspect.signature(method)
        for name, method in inspect.getmembers(Keys, inspect.isfunction)
        if not name.startswith("_")
    }


def every_key(keys: Keys) -> dict[str, str]:
    """Each builder's key, with every argument (optional ones included) given."""
    built = {}
    for name, signature in builders().items():
        arguments = [ARGUMENT] * (len(signature.parameters) - 1)
        built[name] = getattr(keys, name)(*arguments)
        optional = [p for p in signature.parameters.values() if p.default is not p.empty]
        if optional:
            required = arguments[: len(arguments) - len(optional)]
            built[f"{name} (no {optional[0].name})"] = getattr(keys, name)(*required)
    return built


def test_the_builders_cover_the_key_map() -> None:
    # Given / When / Then: the checks below run over at least these concepts
    assert {"call", "state_index", "slots", "campaign", "backlog", "outbox", "inbox"} <= set(
        builders()
    )


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_key_lies_under_the_prefix(prefix: str) -> None:
    # Given a deployment's prefix
    # When every key is built
    built = every_key(Keys(prefix))

    # Then each starts with the prefix and a colon
    for name, key in built.items():
        assert key.startswith(f"{prefix}:"), name


@pytest.mark.parametrize("prefix", PREFIXES)
def test_no_two_concepts_share_a_key(prefix: str) -> None:
    # Given every key of one deployment, built from the same arguments
    built = every_key(Keys(prefix))

    # Then no two builders give the same key
    assert len(set(built.values())) == len(built)


@pytest.mark.parametrize(
    ("first", "second"),
    [(a, b) for i, a in enumerate(PREFIXES) for b in PREFIXES[i + 1 :]],
)
def test_two_prefixes_never_share_a_key(first: str, second: str) -> None:
    # Given two deployments on one Redis
    # When each builds every key
    # Then no key of one is a key of the other
    assert not set(every_key(Keys(first)).values()) & set(every_key(Keys(second)).values())


@pytest.mark.parametrize("prefix", ["cmvoice:staging", "", "with space", "x" * 41, "a/b"])
def test_a_prefix_that_could_reach_into_another_namespace_is_refused(prefix: str) -> None:
    # Given a prefix with a colon (it would read as cmvoice's own namespace) or otherwise odd
    # When / Then the setting refuses it
    with pytest.raises(ValidationError, match="key_prefix"):
        Settings(broker_url="redis://127.0.0.1:1/0", key_prefix=prefix)


def lua_key_shapes() -> list[tuple[str, str]]:
    """(script, key shape) for each key a Lua script builds from ``prefix``; variables are {}."""
    shapes = []
    for script in sorted(files("cmvoice.lua").iterdir(), key=lambda path: path.name):
        if not script.name.endswith(".lua"):
            continue
        for match in _LUA_KEY.finditer(script.read_text(encoding="utf-8")):
            terms = _LUA_TERM.findall(match.group(1))
            shape = "".join(term[1:-1] if term.startswith("'") else "{}" for term in terms)
            shapes.append((script.name, shape))
    return shapes


def test_the_lua_scripts_build_keys_from_the_prefix() -> None:
    # Given / When / Then: the check below has keys to look at
    assert len({shape for _, shape in lua_key_shapes()}) >= 15


@pytest.mark.parametrize(("script", "shape"), lua_key_shapes())
def test_every_key_a_lua_script_builds_is_one_keys_builds(script: str, shape: str) -> None:
    # Given the shape of a key a script builds (its variables as {})
    # When it is compared with every key Keys builds (their arguments as any text)
    patterns = [
        re.escape(key.removeprefix("P")).replace(re.escape(ARGUMENT), ".+")
        for key in every_key(Keys("P")).values()
    ]

    # Then one of them is that key: the scripts and Python agree on the key map
    assert any(re.fullmatch(pattern, shape) for pattern in patterns), f"{script}: P{shape}"
