"""The HTTP API over real HTTP, on the test stack's Redis: ``api`` gives a client with a key."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from cmvoice.serving import ServerThread
from tests.support.stack import Stack, wait_for

#: The key the test API accepts (CMVOICE_API_KEYS), and a second one, as during a rotation.
API_KEY = "test-api-key-0123456789abcdef"
OTHER_API_KEY = "test-api-key-rotated-000000000"


@dataclass
class ApiClient:
    """Requests to the API under test, with the key unless told otherwise."""

    url: str
    session: requests.Session

    def request(self, method: str, path: str, *, key: str | None = API_KEY, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.session.request(
            method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def upload_campaign(self, path: Path, **fields: str) -> Any:
        """``POST /v1/campaigns`` with the file and the form's text fields."""
        with path.open("rb") as file:
            return self.post("/v1/campaigns", files={"file": (path.name, file)}, data=fields)

    def wait_for_phase(self, campaign_id: str, phase: str, timeout_s: float = 20.0) -> Any:
        def reached() -> Any:
            status = self.get(f"/v1/campaigns/{campaign_id}").json()
            return status if status["phase"] == phase else None

        return wait_for(reached, timeout_s=timeout_s)

    def report(self, campaign_id: str) -> list[dict[str, str]]:
        answer = self.get(f"/v1/campaigns/{campaign_id}/report")
        assert answer.status_code == 200, answer.text
        return list(csv.DictReader(io.StringIO(answer.text)))


@pytest.fixture
def api_service(stack: Stack, tmp_path: Path) -> Iterator[ServerThread]:
    """``cmvoice api`` on the stack's Redis, uploads under ``tmp_path``, two keys accepted."""
    # Imported here: the Celery app must not read the settings before conftest sets them.
    from cmvoice.api import create_app
    from cmvoice.runtime import get_runtime

    stack.make_runtime(api_keys=f"{API_KEY},{OTHER_API_KEY}", data_dir=tmp_path / "data")
    with ServerThread(create_app(get_runtime), name="api") as server:
        yield server


@pytest.fixture
def api(api_service: ServerThread) -> Iterator[ApiClient]:
    with requests.Session() as session:
        yield ApiClient(api_service.url, session)
