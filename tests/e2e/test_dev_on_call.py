"""On call with ``cmvoice dev``: Flower tells calls flowing, failing and waiting apart, and the
README's result task gets each outcome.

One ``cmvoice dev`` serves every test here (a start takes 5 to 15 s): it is started with the
README's command and result-task module (section "Receiving outcomes"), taken from README.md
itself, and gets three calls: one the simulated CM refuses for good (the README's commands in
"Try it by hand": ``POST /_sim/refusals`` makes the simulator answer 400 to a number that
cmvoice's own checks accept, so the POST fails however often it is sent), the README's
``cmvoice send`` of "Receiving outcomes", and one sent while that call holds the only
concurrency slot, so it waits.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from cmvoice.dev.plan import FLOWER_TASK_COLUMNS
from cmvoice.privacy import mask_number
from cmvoice.simulator.config import DEFAULT_PORT as DEFAULT_SIMULATOR_PORT
from tests.support.browser import Browser
from tests.support.dev_run import (
    COMMAND,
    DevRun,
    Output,
    new_dev_run,
    run_cli,
    send_call,
    start_dev,
    stop_dev,
)
from tests.support.readme import code_block, section, shell_command
from tests.support.stack import CALLER, wait_for

pytestmark = pytest.mark.slow

TRY_IT = section("Try it by hand")
OUTCOMES = section("Receiving outcomes")
#: The README's command that starts dev with its result task: its variables and its argv.
DEV_VARIABLES, DEV_COMMAND = shell_command(code_block("sh", "cmvoice dev", OUTCOMES), "cmvoice")
MONITORING = section("Monitoring")
#: A number called while the README's call holds the only concurrency slot.
WAITING = "+31612345601"
FLOWER_USER = "ops"
#: Browser window of the screenshots: the Tasks page's columns side by side, nothing cut.
WIDE_WINDOW = (1920, 900)
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: The Tasks page has drawn rows from the server (not its "no tasks" placeholder).
ROWS_DRAWN = (
    "!document.querySelector('#tasks-table_processing')?.checkVisibility() && "
    "document.querySelectorAll('#tasks-table tbody tr td.dt-empty').length === 0 && "
    "document.querySelectorAll('#tasks-table tbody tr').length > 0"
)
#: The dashboard has drawn its Failed count (a dash until then).
FAILED_COUNT_SHOWN = "/^\\d+$/.test(document.querySelector('#workers-failed').innerText.trim())"
#: The Tasks page's rows, each a {column: text} object, columns named as in tasks_columns.
ROWS = f"""Array.from(document.querySelectorAll('#tasks-table tbody tr')).map(row =>
    Object.fromEntries(Array.from(row.cells).map((cell, i) =>
        [{FLOWER_TASK_COLUMNS.split(",")}[i], cell.innerText.trim()])))"""


@dataclass
class OnCall:
    """The running ``cmvoice dev`` and the calls it was given."""

    run: DevRun
    output: Output
    password: str
    readme_call: str = ""
    refused_number: str = ""
    refused_call: str = ""
    waiting_call: str = ""

    @property
    def flower_url(self) -> str:
        return self.run.url("flower")

    def flower(self, path: str, auth: tuple[str, str] | None = None, **params: str) -> Any:
        """A GET of Flower's ``path``, with this run's credentials unless ``auth`` is given."""
        return requests.get(
            self.flower_url + path,
            params=params,
            auth=auth or (FLOWER_USER, self.password),
            timeout=10,
        )

    def tasks(self, **params: str) -> dict[str, dict[str, Any]]:
        """``/api/tasks`` with these query parameters: the tasks by uuid."""
        answer = self.flower("/api/tasks", **params)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def dispatches(self, instruction_id: str, **params: str) -> list[dict[str, Any]]:
        """The ``cmvoice.dispatch`` tasks of one call that ``/api/tasks`` returns."""
        found = self.tasks(taskname="cmvoice.dispatch", **params).values()
        return [task for task in found if task["args"] == repr([instruction_id])]


def fail_a_call_as_the_readme_shows(run: DevRun) -> tuple[str, str]:
    """The README's commands that make a call fail for good, on this run's simulator: the
    number refused, and the instruction id of the call to it."""
    block = code_block("sh", "/_sim/refusals", TRY_IT)
    _, curl = shell_command(block, "curl")
    url = urlsplit(next(word for word in curl if word.startswith("http://")))
    assert url.port == DEFAULT_SIMULATOR_PORT, "the README's curl goes to dev's simulator"
    body = curl[curl.index("-d") + 1]
    headers = {"Content-Type": "application/json"}
    posted = requests.post(run.url("simulator") + url.path, data=body, headers=headers, timeout=5)
    assert posted.status_code == 200, posted.text
    _, send = shell_command(block, "cmvoice")
    return json.loads(body)["callee"], run_cli(run, [COMMAND, *send[1:]]).strip()


@pytest.fixture(scope="module")
def on_call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnCall]:
    """``cmvoice dev`` started as the README says, given its three calls; stopped with Ctrl-C
    after the module's tests, which must leave nothing running."""
    run = new_dev_run(tmp_path_factory.mktemp("on-call"))
    # Given the README's result-task module, at the path its first line names
    module = code_block("python", "@cmvoice.result_task", OUTCOMES)
    module_path = run.cwd / module.splitlines()[0].removeprefix("# ")
    module_path.parent.mkdir(parents=True)
    module_path.write_text(module, encoding="utf-8")
    # And the README's command (with its variables), on this run's ports, with Flower
    # credentials and one concurrency slot
    password = secrets.token_urlsafe(12)
    run.env.update(DEV_VARIABLES)
    run.env.update(
        {
            "CMVOICE_FLOWER_USER": FLOWER_USER,
            "CMVOICE_FLOWER_PASSWORD": password,
            "CMVOICE_MAX_CONCURRENT_CALLS": "1",
        }
    )
    started: tuple[subprocess.Popen[str], Output] | None = None
    try:
        started = start_dev(run, argv=[COMMAND, *DEV_COMMAND[1:], *run.dev_options()])
        output = started[1]
        assert password not in output.text, "a configured password is never printed"
        on_call = OnCall(run, output, password)

        # Flower knows the worker (and so sees its task events) before any call is sent.
        def worker_known() -> bool:
            return any(
                name.startswith("cmvoice-dev-") for name in on_call.flower("/api/workers").json()
            )

        wait_for(worker_known, 30, 0.2)

        # When CM refuses one number for good, and a call goes to it, as the README shows
        on_call.refused_number, on_call.refused_call = fail_a_call_as_the_readme_shows(run)
        wait_for(lambda: on_call.dispatches(on_call.refused_call, state="FAILURE"), 30, 0.2)

        # And the README's call is sent as the README sends it
        _, send = shell_command(code_block("sh", "cmvoice send", OUTCOMES), "cmvoice")
        on_call.readme_call = run_cli(run, [COMMAND, *send[1:]]).strip()
        wait_for(lambda: on_call.dispatches(on_call.readme_call, state="SUCCESS"), 30, 0.2)

        # And a call is sent while the README's call rings, holding the only slot
        on_call.waiting_call = send_call(run, WAITING)
        yield on_call
    finally:
        code = stop_dev(*started) if started else None
        leftovers = run.leftovers()
        run.kill_leftovers()
    # Then, all tests done, Ctrl-C stops everything cleanly
    assert code == 0, output.text[-4000:]
    assert leftovers == []


def test_the_readme_result_task_run_by_dev_logs_the_outcome_of_the_readme_call(
    on_call: OnCall,
) -> None:
    # Given the log line the README shows, for the README's call
    shown = code_block("", "ended:", OUTCOMES).strip()
    expected = UUID.sub(on_call.readme_call, shown.split("] ", 1)[1])

    # Then the worker logs it: the outcome reached the task, in dev's worker
    wait_for(lambda: expected in on_call.output.text, 30, 0.2)
    assert "unregistered task" not in on_call.output.text

    # And Flower lists the task by the name the README gave it, succeeded
    def result_task() -> list[dict[str, Any]]:
        name = DEV_VARIABLES["CMVOICE_RESULT_TASKS"]
        found = on_call.tasks(taskname=name, state="SUCCESS").values()
        return [task for task in found if on_call.readme_call in task["args"]]

    assert len(wait_for(result_task, 15, 0.2)) == 1


def test_flower_from_dev_needs_basic_auth(on_call: OnCall) -> None:
    # Given / When: Flower's API asked with the configured credentials, none, or wrong ones
    right = on_call.flower("/api/workers")
    none = requests.get(on_call.flower_url + "/api/workers", timeout=5)
    wrong = on_call.flower("/api/workers", auth=(FLOWER_USER, "wrong"))

    # Then only the configured ones open it
    assert right.status_code == 200
    assert (none.status_code, wrong.status_code) == (401, 401)


def test_flower_lists_each_dispatch_by_its_instruction_id_and_never_a_number(
    on_call: OnCall,
) -> None:
    # Given the README's call placed
    [task] = wait_for(lambda: on_call.dispatches(on_call.readme_call, state="SUCCESS"), 15)

    # Then its dispatch has the instruction id as its only argument, and says what it did
    assert task["kwargs"] in ("{}", {}, None)
    assert UUID.fullmatch(task["result"].strip("'").removeprefix("placed call ")), task["result"]
    # And no number appears in any task Flower holds
    everything = on_call.flower("/api/tasks").text
    for number in ("+31612345678", CALLER, on_call.refused_number, WAITING):
        assert number[3:] not in everything

    # And its Tasks page has the columns that follow a call, in cmvoice dev's order
    page = on_call.flower("/tasks")
    assert re.findall(r'<th data-column="(\w+)"', page.text) == FLOWER_TASK_COLUMNS.split(",")


def test_flowers_failed_view_lists_the_refused_call_with_cms_reason_and_the_dashboard_counts_it(
    on_call: OnCall, browser: Browser, tmp_path: Path
) -> None:
    # Given the README's failing view, and a screen wide enough for the whole reason
    assert "`/tasks?state=FAILURE`" in MONITORING
    browser.set_basic_auth(FLOWER_USER, on_call.password)
    browser.driver.set_window_size(*WIDE_WINDOW)

    # When on-call opens it in a browser
    browser.open(on_call.flower_url + "/tasks?state=FAILURE", ready=ROWS_DRAWN)
    rows = browser.evaluate(ROWS)
    browser.screenshot(tmp_path / "flower-failed-tasks.png")

    # Then it lists the refused call's dispatch alone, FAILURE, its exception saying why: CM's
    # 400 for that number, masked
    call = on_call.refused_call
    assert [(row["name"], row["state"], row["args"]) for row in rows] == [
        ("cmvoice.dispatch", "FAILURE", repr([call]))
    ]
    reason = rows[0]["exception"]
    assert reason.startswith("CallFailed('failed: POST /Notification: CM answered 400: callee: ")
    assert f"(got {mask_number(on_call.refused_number)})" in reason
    assert on_call.refused_number[3:] not in browser.evaluate("document.body.innerText")
    # And the page's Failed button is the one pressed
    pressed = browser.evaluate("document.querySelector('.task-state-filter.active').innerText")
    assert pressed.strip() == "Failed"
    # And `cmvoice call status`, which the README points to, says the same
    status = json.loads(run_cli(on_call.run, [COMMAND, "call", "status", call, "--json"]))
    assert status["state"] == "FAILED"
    assert "CM answered 400" in json.dumps(status)
    assert status["callee"] == mask_number(on_call.refused_number)

    # When the dashboard opens
    browser.open(on_call.flower_url + "/", ready=FAILED_COUNT_SHOWN)
    browser.screenshot(tmp_path / "flower-dashboard.png")

    # Then it counts that one failure
    assert browser.text("#workers-failed") == "1"
    assert int(browser.text("#workers-succeeded")) >= 1
    assert browser.console_errors() == []


def test_flowers_dispatch_and_waiting_views_show_calls_placed_and_the_call_waiting_for_a_slot(
    on_call: OnCall, browser: Browser, tmp_path: Path
) -> None:
    # Given the README's flowing and waiting views, and the waiting call sent back to Redis
    assert "`/tasks?name=dispatch`" in MONITORING
    assert "`/tasks?state=WAITING`" in MONITORING
    wait_for(lambda: on_call.dispatches(on_call.waiting_call, state="WAITING"), 15)
    browser.set_basic_auth(FLOWER_USER, on_call.password)
    browser.driver.set_window_size(*WIDE_WINDOW)

    # When on-call opens the dispatches
    browser.open(on_call.flower_url + "/tasks?name=dispatch", ready=ROWS_DRAWN)
    rows = browser.evaluate(ROWS)
    browser.screenshot(tmp_path / "flower-dispatches.png")

    # Then they are all there, the README's call with the call id CM gave it
    assert {row["name"] for row in rows} == {"cmvoice.dispatch"}
    by_call = {row["args"]: row for row in rows}
    for call in (on_call.readme_call, on_call.refused_call, on_call.waiting_call):
        assert repr([call]) in by_call, call
    assert by_call[repr([on_call.readme_call])]["result"].startswith("'placed call ")

    # When on-call opens the waiting view
    browser.open(on_call.flower_url + "/tasks?state=WAITING", ready=ROWS_DRAWN)
    rows = browser.evaluate(ROWS)
    browser.screenshot(tmp_path / "flower-waiting.png")

    # Then it lists the dispatch that found the only slot taken, saying so, and only that
    assert [(row["state"], row["args"], row["result"]) for row in rows] == [
        ("WAITING", repr([on_call.waiting_call]), "'waiting: a concurrency slot'")
    ]


def test_the_flower_api_filters_the_readme_names_tell_flowing_failing_and_waiting_apart(
    on_call: OnCall,
) -> None:
    # Given the README's JSON filters
    for url in (
        "/api/tasks?taskname=cmvoice.dispatch&state=FAILURE",
        "/api/tasks?taskname=cmvoice.dispatch&state=WAITING",
        "/api/queues/length",
    ):
        assert f"`{url}`" in MONITORING, url

    # When they are asked
    failed = on_call.tasks(taskname="cmvoice.dispatch", state="FAILURE")
    waiting = on_call.tasks(taskname="cmvoice.dispatch", state="WAITING")
    succeeded = on_call.tasks(taskname="cmvoice.dispatch", state="SUCCESS")
    queues = on_call.flower("/api/queues/length")

    # Then each finds its calls and no other
    assert [task["args"] for task in failed.values()] == [repr([on_call.refused_call])]
    assert [task["args"] for task in waiting.values()] == [repr([on_call.waiting_call])]
    assert waiting.keys() == on_call.tasks(search="name:dispatch result:waiting").keys()
    placed = {task["args"] for task in succeeded.values() if "placed call" in task["result"]}
    assert repr([on_call.readme_call]) in placed
    assert repr([on_call.refused_call]) not in {task["args"] for task in succeeded.values()}
    assert "cmvoice.dispatch" in {queue["name"] for queue in queues.json()["active_queues"]}
    # And a name filter takes the whole name, the page's `name:` search a part of it
    assert on_call.tasks(taskname="dispatch") == {}
    assert failed.keys() <= on_call.tasks(search="name:dispatch state:FAILURE").keys()

    # And `args:` follows one call through its tasks: dispatch, callback, the result task
    def tasks_of_the_readme_call() -> set[str]:
        found = on_call.tasks(search=f"args:{on_call.readme_call}").values()
        return {task["name"] for task in found}

    expected = {"cmvoice.dispatch", "cmvoice.handle_result", DEV_VARIABLES["CMVOICE_RESULT_TASKS"]}
    wait_for(lambda: tasks_of_the_readme_call() == expected, 20, 0.2)
    # And `worker:` takes a part of the worker's name; the exception text is not searched
    assert failed.keys() <= on_call.tasks(search="worker:cmvoice-dev state:FAILURE").keys()
    assert on_call.tasks(search="CallFailed") == {}


def test_every_flower_page_the_readme_names_answers(on_call: OnCall) -> None:
    # Given the Flower paths in the README's Monitoring section
    flower_part = MONITORING.split("**Flower**", 1)[1].split("Flower's `/metrics`", 1)[0]
    paths = set(re.findall(r"`(/[^`\s<]*)`", flower_part))
    assert {"/", "/tasks?state=FAILURE", "/tasks?name=dispatch", "/broker"} <= paths

    # When each is asked / Then each answers, JSON ones with JSON
    for path in sorted(paths):
        answer = on_call.flower(path)
        assert answer.status_code == 200, (path, answer.status_code)
        if path.startswith("/api/"):
            assert isinstance(answer.json(), dict), path
