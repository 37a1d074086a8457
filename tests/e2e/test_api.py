"""``cmvoice api`` over real HTTP: keys, errors, calls and campaigns through the real stack."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from cmvoice.campaigns.store import CampaignStore
from cmvoice.embedded_redis import free_port
from cmvoice.errors import ConfigurationError
from cmvoice.reporting.from_redis import campaign_page_view
from cmvoice.runtime import get_runtime
from tests.support.api_fixtures import API_KEY, OTHER_API_KEY, ApiClient
from tests.support.stack import CALLEE, CALLER, Stack, wait_for
from tests.support.workers import CMVOICE, worker_env

NOTIFICATION = {"callee": CALLEE, "caller": CALLER, "prompt": "Your parcel arrives today."}
TEMPLATE = json.dumps({"caller": CALLER, "prompt": "Your appointment is tomorrow at nine."})


def call_body(**instruction: Any) -> dict[str, Any]:
    return {"kind": "notification", "instruction": {**NOTIFICATION, **instruction}}


def errors_of(answer: requests.Response) -> list[tuple[str, str]]:
    """(field, value) of each error of an answer, after checking its shape."""
    body = answer.json()
    assert set(body) == {"errors"}, body
    assert all(set(error) == {"field", "rule", "value"} for error in body["errors"]), body
    return [(error["field"], error["value"]) for error in body["errors"]]


def metric(api: ApiClient, line_start: str) -> float:
    text = api.get("/metrics", key=None).text
    values = [line.split()[-1] for line in text.splitlines() if line.startswith(line_start)]
    return float(values[0]) if values else 0.0


def write_calls_csv(path: Path, callees: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["callee"])
        writer.writerows([callee] for callee in callees)
    return path


def numbered_callees(count: int) -> list[str]:
    # Endings 20..: the simulator answers them with code 10 (no redials).
    return [f"+316123456{20 + n:02d}" for n in range(count)]


def test_a_request_without_a_key_or_with_a_wrong_one_is_refused_and_counted(
    api: ApiClient, stack: Stack
) -> None:
    # Given the API, with two keys configured
    # When a web app calls it without a key, with a wrong key, and with a key of another scheme
    missing = api.post("/v1/calls", key=None, json=call_body())
    wrong = api.get("/v1/calls/some-id", key="not-a-key-of-this-server-000")
    basic = api.get("/v1/campaigns/x", key=None, headers={"Authorization": f"Basic {API_KEY}"})

    # Then each is refused with 401 and a Bearer challenge, naming the header, echoing no key
    for answer in (missing, wrong, basic):
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == "Bearer"
        assert [field for field, _ in errors_of(answer)] == ["Authorization"]
    assert "not-a-key-of-this-server" not in wrong.text
    # ...nothing was queued, and the refusals are counted by reason
    assert stack.calls() == []
    assert metric(api, 'cmvoice_api_unauthorized_total{reason="missing"}') == 2
    assert metric(api, 'cmvoice_api_unauthorized_total{reason="wrong"}') == 1

    # And both configured keys are accepted
    for key in (API_KEY, OTHER_API_KEY):
        assert api.get("/v1/calls/unknown-id", key=key).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        pytest.param(
            {"kind": "notification", "instruction": {"caller": CALLER, "prompt": "Hello."}},
            "instruction.callee",
            "nothing",
            id="missing-callee",
        ),
        pytest.param(call_body(callee="0612345678"), "instruction.callee", "061****678", id="nat"),
        pytest.param({"kind": "sms", "instruction": NOTIFICATION}, "kind", "'sms'", id="kind"),
        pytest.param({"instruction": NOTIFICATION}, "kind", "nothing", id="no-kind"),
        pytest.param({"kind": "otp", "instruction": CALLEE}, "instruction", "a str", id="not-obj"),
        pytest.param(
            {**call_body(), "respect_window": "maybe"}, "respect_window", "a str", id="bool"
        ),
        pytest.param({**call_body(), "expires_in": -5}, "expires_in", "-5", id="expires-in"),
        pytest.param({**call_body(), "priority": 1}, "priority", "1", id="unknown-field"),
        pytest.param([call_body()], "body", "a list", id="array"),
    ],
)
def test_an_invalid_call_is_answered_422_naming_the_field_with_numbers_masked(
    api: ApiClient, stack: Stack, body: Any, field: str, value: str
) -> None:
    # When a web app posts a call that breaks a rule
    answer = api.post("/v1/calls", json=body)

    # Then the answer is 422 naming the field and the value, never a full number
    assert answer.status_code == 422, answer.text
    assert (field, value) in errors_of(answer)
    assert "612345678" not in answer.text
    assert stack.calls() == []


def test_a_body_that_is_not_json_or_too_long_is_refused_in_the_same_shape(
    api: ApiClient,
) -> None:
    # When the body is malformed JSON, or bigger than 64 KiB (said up front, or streamed)
    malformed = api.post("/v1/calls", data=b'{"kind": "otp",', headers={"Content-Type": "x"})
    too_long = api.post("/v1/calls", json=call_body(prompt="x" * 70_000))
    streamed = api.post("/v1/calls", data=(b"x" * 1024 for _ in range(100)))
    nowhere = api.get("/v1/nothing-here")

    # Then 422 names the body, 413 says the bound, and an unknown path is a 404 of the same shape
    assert malformed.status_code == 422
    assert errors_of(malformed) == [("body", "")]
    assert "is not JSON" in malformed.json()["errors"][0]["rule"]
    assert too_long.status_code == streamed.status_code == 413
    assert errors_of(too_long) == [("body", f"{len(too_long.request.body)} bytes")]
    assert errors_of(streamed) == [("body", "over 65536 bytes")]
    assert nowhere.status_code == 404
    assert errors_of(nowhere) == [("path", "/v1/nothing-here")]


def test_a_call_is_accepted_placed_and_followed_to_its_outcome_and_a_retry_places_no_other(
    api: ApiClient, stack: Stack, worker: Any
) -> None:
    # Given a call with the web app's own instruction id
    body = call_body(**{"instruction-id": "order-1234-shipped"})

    # When it is posted, then it is accepted at once
    accepted = api.post("/v1/calls", json=body)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json() == {
        "instruction_id": "order-1234-shipped",
        "kind": "notification",
        "created": True,
    }

    # And following it shows it FINISHED with CM's result, the number masked
    def finished() -> Any:
        status = api.get("/v1/calls/order-1234-shipped").json()
        return status if status["state"] == "FINISHED" else None

    status = wait_for(finished)
    assert status["attempts"] == 1
    assert status["outcome"]["result_code"] == 10
    assert status["outcome"]["finished_on"]
    assert [attempt["callee"] for attempt in status["attempt_chain"]] == ["+31******678"]
    assert CALLEE not in json.dumps(status)

    # When the web app retries the same request (a timeout on its side, a double click)
    again = api.post("/v1/calls", json=body)

    # Then it is answered 200, created false, and CM got one call only
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert len(stack.calls()) == 1


def test_a_broken_record_answers_500_without_details_and_logs_no_personal_data(
    api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a ledger record damaged in Redis: its state holds a phone number
    ledger = get_runtime().ledger
    ledger.redis.hset(ledger.key("damaged"), mapping={"state": CALLEE, "kind": "notification"})
    caplog.set_level(logging.ERROR, logger="cmvoice.api")

    # When it is asked for
    answer = api.get("/v1/calls/damaged")

    # Then the answer is a bare 500 in the usual shape
    assert answer.status_code == 500
    assert answer.json() == {"errors": [{"field": "", "rule": "internal error", "value": ""}]}
    # ...and the log has the exception's type and stack, but not its message with the number
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "ValueError" in logged
    assert "ledger.py" in logged
    assert CALLEE not in logged


def test_a_campaign_upload_finishes_its_good_rows_and_reports_the_bad_ones(
    api: ApiClient, stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a file of three good rows, a national number and a duplicate
    callees = [*numbered_callees(2), "0612345678", numbered_callees(1)[0], "+31612345625"]
    path = write_calls_csv(tmp_path / "reminders.csv", callees)

    # When it is uploaded with a template and a calling window
    created = api.upload_campaign(
        path, kind="notification", template=TEMPLATE, window="00:00-24:00", days="mon-sun"
    )

    # Then the campaign exists at once, and its good rows finish
    assert created.status_code == 202, created.text
    campaign = created.json()
    cid = campaign["campaign_id"]
    assert campaign["name"] == "reminders.csv"
    assert campaign["page_url"] == f"/campaigns/{cid}"
    status = api.wait_for_phase(cid, "finished")
    assert (status["rows_read"], status["enqueued"], status["invalid"]) == (5, 3, 1)
    assert (status["duplicates"], status["states"]) == (1, {"FINISHED": 3})
    assert Counter(call["callee"] for call in stack.calls()) == {
        "+31612345620": 1,
        "+31612345621": 1,
        "+31612345625": 1,
    }

    # And the report has every row, the bad ones with the rule they broke, numbers masked
    rows = api.report(cid)
    assert [(row["line"], row["state"]) for row in rows] == [
        ("2", "FINISHED"),
        ("3", "FINISHED"),
        ("4", "INVALID"),
        ("5", "DUPLICATE"),
        ("6", "FINISHED"),
    ]
    assert "international number" in rows[2]["last_error"]
    assert rows[0]["callee"] == "+31******620"
    assert "+31612345620" not in json.dumps(rows)
    # ...and so has the errors file beside the upload
    [errors_file] = (tmp_path / "data" / "uploads").glob("*-errors.csv")
    assert [line.split(",")[:2] for line in errors_file.read_text().splitlines()[1:]] == [
        ["4", "callee"],
        ["5", "callee"],
    ]

    # And the page's view of it adds up: every call placed and ended in the charts
    view = campaign_page_view(CampaignStore(get_runtime()), cid)
    assert sum(count for _, count in view.placed_per_minute) == 3
    assert sum(by_code.get(10, 0) for _, by_code in view.outcomes_per_minute) == 3
    assert (view.done, view.expired, view.result_codes) == (3, 0, {10: 3})
    assert list(view.errors_by_rule.values()) == [1]


def test_a_campaign_form_that_breaks_rules_is_refused_naming_each_field(
    api: ApiClient, tmp_path: Path
) -> None:
    # Given a good file
    path = write_calls_csv(tmp_path / "calls.csv", numbered_callees(2))

    # When it is uploaded with a wrong window, days, deadline and a typo in a field's name
    answer = api.upload_campaign(
        path,
        kind="notification",
        template=TEMPLATE,
        window="9-17",
        days="weekdays",
        until="2026-12-24T18:00Z",
        valid_for="8h",
        rates="5/s",
    )
    no_file = api.post("/v1/campaigns", data={"kind": "otp"}, files={"other": ("x", b"")})
    bad_template = api.upload_campaign(path, kind="notification", template='{"callee": "+316"}')

    # Then each problem is named, and no campaign or upload was kept
    assert answer.status_code == 422
    assert [field for field, _ in errors_of(answer)] == [
        "rates",
        "window",
        "days",
        "valid_for",
    ]
    assert no_file.status_code == 422
    assert [field for field, _ in errors_of(no_file)] == ["other"]
    assert bad_template.status_code == 422
    assert errors_of(bad_template) == [("template", "")]
    assert CampaignStore(get_runtime()).list_campaigns() == []
    assert not list((tmp_path / "data" / "uploads").glob("*"))


def test_a_campaign_is_paused_resumed_and_cancelled_through_the_api(
    api: ApiClient, stack: Stack, worker: Any, tmp_path: Path
) -> None:
    # Given a campaign of 20 calls at 10 a second, a few calls in
    path = write_calls_csv(tmp_path / "calls.csv", numbered_callees(20))
    created = api.upload_campaign(path, kind="notification", template=TEMPLATE, rate="10/s")
    cid = created.json()["campaign_id"]
    wait_for(lambda: len(stack.calls()) >= 2)

    # When it is paused
    paused = api.post(f"/v1/campaigns/{cid}/pause")

    # Then it says so, and no call is placed while it is paused
    assert paused.status_code == 200, paused.text
    assert paused.json()["phase"] == "paused"
    wait_for(lambda: api.get(f"/v1/campaigns/{cid}").json()["in_flight"] == 0)
    placed = len(stack.calls())
    assert api.post(f"/v1/campaigns/{cid}/resume").json()["status"] == "running"
    wait_for(lambda: len(stack.calls()) > placed)

    # When it is cancelled, then the calls still queued are cancelled, never placed
    cancelled = api.post(f"/v1/campaigns/{cid}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["phase"] == "cancelled"
    assert cancelled.json()["cancelled_calls"] > 0
    final = wait_for(lambda: (s := api.get(f"/v1/campaigns/{cid}").json())["active"] == 0 and s)
    assert final["states"]["CANCELLED"] + final["states"]["FINISHED"] == 20
    assert final["states"]["FINISHED"] == len(stack.calls()) < 20

    # And a cancelled campaign cannot be paused, nor an unknown one found
    refused = api.post(f"/v1/campaigns/{cid}/pause")
    assert refused.status_code == 409
    assert errors_of(refused) == [("status", "cancelled")]
    assert api.post("/v1/campaigns/20990101-00000000/resume").status_code == 404


def test_the_openapi_document_lists_every_endpoint_and_needs_no_key(api: ApiClient) -> None:
    # When the OpenAPI document and its page are fetched without a key
    document = api.get("/openapi.json", key=None)
    docs = api.get("/docs", key=None)

    # Then both are served, and the document lists every endpoint and the bearer scheme
    assert document.status_code == docs.status_code == 200
    paths = document.json()["paths"]
    assert {path: sorted(paths[path]) for path in paths} == {
        "/v1/calls": ["post"],
        "/v1/calls/{instruction_id}": ["get"],
        "/v1/campaigns": ["post"],
        "/v1/campaigns/{campaign_id}": ["get"],
        "/v1/campaigns/{campaign_id}/pause": ["post"],
        "/v1/campaigns/{campaign_id}/resume": ["post"],
        "/v1/campaigns/{campaign_id}/cancel": ["post"],
        "/v1/campaigns/{campaign_id}/report": ["get"],
        "/campaigns/{campaign_id}": ["get"],
    }
    schemes = document.json()["components"]["securitySchemes"]
    assert [scheme["scheme"] for scheme in schemes.values()] == ["bearer"]
    body = paths["/v1/calls"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["kind"]["enum"] == ["notification", "otp", "dtmf"]
    assert "swagger-ui" in docs.text


def test_the_api_refuses_to_start_without_a_key(stack: Stack, tmp_path: Path) -> None:
    # Given no CMVOICE_API_KEYS
    from cmvoice.api import create_app

    stack.make_runtime(api_keys=None)

    # When the app is built, or `cmvoice api` is run
    with pytest.raises(ConfigurationError, match="CMVOICE_API_KEYS"):
        create_app(get_runtime)
    env = worker_env({"broker_url": stack.redis_url})
    env.pop("CMVOICE_API_KEYS", None)
    run = subprocess.run(
        [CMVOICE, "api", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it does not start, and says which variable to set
    assert run.returncode == 1
    assert "CMVOICE_API_KEYS: required by `cmvoice api`" in " ".join(run.stderr.split())
    assert os.listdir(tmp_path) == []


def test_a_call_a_calling_rule_refuses_is_answered_422_with_the_rule(api: ApiClient) -> None:
    # Given a suppressed number
    from cmvoice.rules.suppression import SuppressionList

    SuppressionList(get_runtime()).add([CALLEE])

    # When a call to it is posted
    answer = api.post("/v1/calls", json=call_body())

    # Then it is refused naming the rule, the number masked, and nothing is queued
    assert answer.status_code == 422
    [error] = answer.json()["errors"]
    assert error["field"] == "instruction.callee"
    assert error["rule"].startswith("suppressed: ")
    assert error["value"] == "+31******678"
    assert CALLEE not in answer.text
