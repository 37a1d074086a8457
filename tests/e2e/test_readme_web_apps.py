"""The README's web-app snippets run as written: served over HTTP and called, on a live stack.

The code comes from README.md itself (section "Enqueueing calls from a web app"), never from a
copy: a snippet that stops working fails here. Flask's app is served by werkzeug, FastAPI's by
uvicorn, each in a thread of this process, which has the stack's runtime (real Redis, the
simulator, the receiver) and a real worker.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

import cmvoice
from cmvoice.privacy import mask_number
from cmvoice.serving import ServerThread
from tests.support.readme import code_block, section
from tests.support.stack import CALLEE, Stack, wait_for

SNIPPETS = section("Enqueueing calls from a web app")
#: A number a calling rule refuses in these tests (it is put on the suppression list).
SUPPRESSED = "+31612345670"


@contextmanager
def served_by_werkzeug(app: Any) -> Iterator[str]:
    """A WSGI app (Flask's) on a free port, in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="werkzeug", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


@contextmanager
def served_by_uvicorn(app: Any) -> Iterator[str]:
    """An ASGI app (FastAPI's) on a free port, in a thread; yields its base URL."""
    with ServerThread(app, name="readme-fastapi") as server:
        yield server.url


@dataclass(frozen=True)
class WebApp:
    """One README snippet: how to find it, serve it, and call its endpoint."""

    framework: str
    #: A line that only this snippet has.
    marker: str
    #: The module-level name of the app object in the snippet.
    app_name: str
    serve: Callable[[Any], AbstractContextManager[str]]
    path: str
    #: The app the call it places goes to at CM.
    cm_app: str


FLASK = WebApp(
    "flask", "from flask import", "app", served_by_werkzeug, "/orders/1234/shipped-call",
    "Notification",
)  # fmt: skip
FASTAPI = WebApp(
    "fastapi", "from fastapi import", "api", served_by_uvicorn, "/login/code-call", "OTP"
)


@pytest.fixture
def load_snippet(tmp_path: Path) -> Iterator[Callable[[WebApp], ModuleType]]:
    """Imports a README snippet as a module of its own (frameworks look their module up)."""
    names: list[str] = []

    def load(web_app: WebApp) -> ModuleType:
        name = f"readme_{web_app.framework}_snippet"
        path = tmp_path / f"{name}.py"
        path.write_text(code_block("python", web_app.marker, SNIPPETS), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        names.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in names:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("web_app", [FLASK, FASTAPI], ids=lambda web_app: web_app.framework)
def test_the_readme_web_app_answers_bad_input_with_4xx_and_places_a_good_call(
    web_app: WebApp,
    load_snippet: Callable[[WebApp], ModuleType],
    stack: Stack,
    worker: Any,
) -> None:
    # Given the README's snippet served over HTTP, a live stack, and a suppressed number
    module = load_snippet(web_app)
    cmvoice.suppress(SUPPRESSED)
    with web_app.serve(getattr(module, web_app.app_name)) as base_url:
        url = base_url + web_app.path

        # When a client posts a body without a phone, then one that is not JSON
        missing = requests.post(url, json={"telephone": CALLEE}, timeout=10)
        not_json = requests.post(url, data="phone=+31612345678", timeout=10)

        # Then both are refused with a 4xx that names the missing field
        for answer in (missing, not_json):
            assert answer.status_code in (400, 422), answer.text
            assert "phone" in answer.text

        # When the phone is a national number (CM wants international ones)
        national = requests.post(url, json={"phone": "0612345678"}, timeout=10)

        # Then it is a 422 naming the field and the rule, the number masked
        assert national.status_code == 422, national.text
        assert "callee: must be an international number" in national.text
        assert "0612345678" not in national.text

        # When the number is one a calling rule refuses
        refused = requests.post(url, json={"phone": SUPPRESSED}, timeout=10)

        # Then it is a 422 naming the rule, the number masked
        assert refused.status_code == 422, refused.text
        assert "suppressed" in refused.text
        assert mask_number(SUPPRESSED) in refused.text
        assert SUPPRESSED[1:] not in refused.text

        # When a good number is posted
        good = requests.post(url, json={"phone": CALLEE}, timeout=10)

    # Then it is a 202 with the instruction id, and CM gets that call, and no other
    assert good.status_code == 202, good.text
    instruction_id = good.json()["instruction_id"]
    placed = wait_for(lambda: stack.calls())
    assert [(call["instruction-id"], call["app"]) for call in placed] == [
        (instruction_id, web_app.cm_app)
    ]
