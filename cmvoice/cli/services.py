"""The long-running commands: ``worker``, ``receiver``, ``api``, ``simulator`` and ``dev``."""

import contextlib
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cmvoice.cli.rendering import console, err_console

if TYPE_CHECKING:
    from pydantic import ValidationError

    from cmvoice.config import Settings

#: Worker threads: dispatch mostly waits on CM and on the rate limit, so threads are cheap.
DEFAULT_WORKER_CONCURRENCY = 32
#: Log levels the simulator accepts.
SIMULATOR_LOG_LEVELS = ("debug", "info", "warning", "error")


class LazyDefault:
    """An option's default, read from the module that owns it when first needed.

    ``cmvoice --help`` builds the options of every command: importing their owners there
    (Celery for the queue names, the simulator's modules) would make every command slow to
    start. Click calls this for the value; ``--help`` shows ``str()`` of it.
    """

    def __init__(self, module: str, name: str, render: Callable[[Any], Any] | None = None) -> None:
        self.module = module
        self.name = name
        self.render = render

    def __call__(self) -> Any:
        value = getattr(importlib.import_module(self.module), self.name)
        return self.render(value) if self.render else value

    def __str__(self) -> str:
        value = self()
        return ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

    def __repr__(self) -> str:
        return f"LazyDefault({self.module}.{self.name})"


def lazy_default(module: str, name: str, render: Callable[[Any], Any] | None = None) -> Any:
    """A LazyDefault, typed ``Any`` so that it can stand as the default of a typed option."""
    return LazyDefault(module, name, render)


# Defaults owned by other modules, read from them when first needed (see LazyDefault).
RECEIVER_PORT = lazy_default("cmvoice.config", "DEFAULT_RECEIVER_PORT")
API_PORT = lazy_default("cmvoice.api.app", "DEFAULT_API_PORT")
SIMULATOR_PORT = lazy_default("cmvoice.simulator.config", "DEFAULT_PORT")
SIMULATOR_PREFIX = lazy_default("cmvoice.simulator.config", "DEFAULT_PREFIX")
SIMULATOR_TOKENS = lazy_default("cmvoice.simulator.config", "DEV_PRODUCT_TOKEN", lambda t: [t])
RETRY_AFTER_S = lazy_default("cmvoice.simulator.faults", "DEFAULT_RETRY_AFTER_S")
HOLD_S = lazy_default("cmvoice.simulator.faults", "DEFAULT_HOLD_S")
TIMEOUT_PLACES_CALL = lazy_default("cmvoice.simulator.faults", "DEFAULT_TIMEOUT_PLACES_CALL")
FLOWER_PORT = lazy_default("cmvoice.dev", "DEFAULT_FLOWER_PORT")
METRICS_HOST = lazy_default("cmvoice.metrics", "DEFAULT_METRICS_HOST")
DEMO_TIMEOUT_S = lazy_default("cmvoice.dev", "DEFAULT_DEMO_TIMEOUT_S")


@contextlib.contextmanager
def _broker_for(command: str) -> "Iterator[Settings]":
    """Settings for a command that needs the broker: starts the embedded Redis when none is set."""
    from cmvoice.config import get_settings
    from cmvoice.embedded_redis import EmbeddedRedis, is_answering

    settings = get_settings()
    if not settings.uses_embedded_redis or is_answering(settings.effective_broker_url):
        yield settings
        return
    server = EmbeddedRedis(
        port=settings.embedded_redis_port, data_dir=settings.data_dir / "redis", persistent=True
    )
    err_console().print(
        f"{command}: no CMVOICE_BROKER_URL set; starting an embedded Redis on {server.url} "
        f"(data in {server.data_dir})"
    )
    with server:
        yield settings


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Threads; each runs one dispatch at a time.")
    ] = DEFAULT_WORKER_CONCURRENCY,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues",
            "-Q",
            help="Comma-separated queues to consume (default: cmvoice's own, and "
            "CMVOICE_RESULT_QUEUE when --include is given).",
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            "-I",
            help="A module of your application to import (result tasks, @on_result hooks); "
            "repeatable. The worker then also runs your result tasks.",
        ),
    ] = None,
    beat: Annotated[
        bool, typer.Option("--beat", "-B", help="Also run the reconciler's periodic schedule.")
    ] = False,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=1,
            max=65535,
            help="Serve Prometheus metrics on this port (default: CMVOICE_WORKER_METRICS_PORT; "
            "none: off).",
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Interface the metrics are served on.")
    ] = METRICS_HOST,
) -> None:
    """Start a Celery worker (thread pool). Other options are passed on to Celery."""
    from cmvoice.messages import ALL_QUEUES
    from cmvoice.runtime import get_runtime
    from cmvoice.worker import app as celery_app

    with _broker_for("worker") as settings:
        # Fail now, naming the variable, rather than in the first task.
        get_runtime().product_token  # noqa: B018
        if queues is None:
            # Your result tasks have a queue of their own: consumed only where they can run.
            wanted = [*ALL_QUEUES, settings.result_queue] if include else list(ALL_QUEUES)
            queues = ",".join(dict.fromkeys(wanted))
        argv = ["worker", "--pool", "threads", "--concurrency", str(concurrency)]
        argv += ["--queues", queues, "--loglevel", loglevel, "--metrics-host", metrics_host]
        if metrics_port is not None:
            argv += ["--metrics-port", str(metrics_port)]
        if include:
            argv += ["--include", ",".join(include)]
        if beat:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            argv += ["--beat", "--schedule", str(settings.data_dir / "celerybeat-schedule")]
        celery_app.worker_main([*argv, *ctx.args])


def receiver(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = RECEIVER_PORT,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve CM's callbacks (POST /callbacks/cm/<id>/<sig>), /healthz and /metrics."""
    import uvicorn

    with _broker_for("receiver"):
        uvicorn.run(
            "cmvoice.receiver:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            access_log=False,
        )


def api(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = API_PORT,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the HTTP API: /v1/calls, /v1/campaigns, campaign pages, /docs and /metrics."""
    import uvicorn

    from cmvoice.api.auth import configured_keys
    from cmvoice.config import get_settings

    # Refuse now, naming the variable: the API never serves a request without a key.
    configured_keys(get_settings())
    with _broker_for("api"):
        uvicorn.run(
            "cmvoice.api:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
        )


def _faults_problems(exc: "ValidationError") -> str:
    """``--fail-429: Input should be ... (got 2.0)``; a rule between options shows no value."""
    from cmvoice.privacy import quote_value
    from cmvoice.validation_errors import describe_validation_error, dotted_location

    errors = describe_validation_error(
        exc,
        name_field=lambda error: (
            f"--{dotted_location(error).replace('_', '-')}" if error["loc"] else "faults"
        ),
        show_value=lambda error: quote_value(error.get("input")) if error["loc"] else "",
    )
    return "; ".join(str(error) for error in errors)


def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = SIMULATOR_PORT,
    time_scale: Annotated[
        float, typer.Option(help="Factor on simulated call durations (0.001: a 60 s ring = 60 ms).")
    ] = 1.0,
    token: Annotated[
        list[str], typer.Option(help="An accepted product token (repeatable).")
    ] = SIMULATOR_TOKENS,
    prefix: Annotated[str, typer.Option(help="Path prefix of the apps.")] = SIMULATOR_PREFIX,
    callback_url: Annotated[
        str | None, typer.Option(help="Callback URL for instructions that have none.")
    ] = None,
    fail_429: Annotated[float, typer.Option(help="Share of POSTs answered 429.")] = 0.0,
    retry_after_s: Annotated[
        int, typer.Option(help="Retry-After of a 429, in seconds.")
    ] = RETRY_AFTER_S,
    fail_500: Annotated[float, typer.Option(help="Share of POSTs answered 500.")] = 0.0,
    fail_503: Annotated[float, typer.Option(help="Share of POSTs answered 503.")] = 0.0,
    timeout_rate: Annotated[
        float, typer.Option(help="Share of POSTs held past the client's read timeout.")
    ] = 0.0,
    hold_s: Annotated[float, typer.Option(help="Seconds a timed-out POST is held.")] = HOLD_S,
    timeout_places_call: Annotated[
        float, typer.Option(help="Chance that a timed-out POST still places its call.")
    ] = TIMEOUT_PLACES_CALL,
    places_call_on_500: Annotated[
        bool, typer.Option(help="A 500 may place its call too (chance: --timeout-places-call).")
    ] = False,
    latency_ms: Annotated[float, typer.Option(help="Milliseconds added to every POST.")] = 0.0,
    drop_callbacks: Annotated[float, typer.Option(help="Share of callbacks never sent.")] = 0.0,
    duplicate_callbacks: Annotated[
        float, typer.Option(help="Share of callbacks sent twice.")
    ] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible faults.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the CM simulator: a local Voice API that places simulated calls and posts callbacks."""
    import logging

    import uvicorn
    from pydantic import ValidationError

    from cmvoice.simulator import DEV_PRODUCT_TOKEN, Faults, SimulatorConfig, create_app

    try:
        faults = Faults(
            fail_429=fail_429,
            retry_after_s=retry_after_s,
            fail_500=fail_500,
            fail_503=fail_503,
            timeout_rate=timeout_rate,
            hold_s=hold_s,
            timeout_places_call=timeout_places_call,
            places_call_on_500=places_call_on_500,
            latency_ms=latency_ms,
            drop_callbacks=drop_callbacks,
            duplicate_callbacks=duplicate_callbacks,
        )
        config = SimulatorConfig(
            tokens=tuple(token),
            time_scale=time_scale,
            prefix=prefix,
            default_callback_url=callback_url,
            faults=faults,
            seed=seed,
        )
    except ValidationError as exc:
        raise typer.BadParameter(_faults_problems(exc)) from None
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if log_level.lower() not in SIMULATOR_LOG_LEVELS:
        raise typer.BadParameter("must be debug, info, warning or error", param_hint="--log-level")
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    dev_only = config.tokens == (DEV_PRODUCT_TOKEN,)
    tokens = "the dev token" if dev_only else f"{len(config.tokens)} token(s) (hidden)"
    err_console().print(
        f"CM simulator on http://{host}:{port}{config.prefix}/{{Notification,OTP,DTMF}}, "
        f"accepting {tokens}, time scale {time_scale:g}; control API at /_sim"
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level.lower())


def dev(
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Once everything is up, send one call of each app (and one nobody answers), "
            "print their outcomes, stop everything and exit.",
        ),
    ] = False,
    receiver_port: Annotated[
        int, typer.Option(help="Port of the callback receiver.")
    ] = RECEIVER_PORT,
    simulator_port: Annotated[int, typer.Option(help="Port of the CM simulator.")] = SIMULATOR_PORT,
    flower_port: Annotated[int, typer.Option(help="Port of Flower.")] = FLOWER_PORT,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data of the embedded Redis and beat (default: CMVOICE_DATA_DIR)."),
    ] = None,
    time_scale: Annotated[
        float | None,
        typer.Option(help="Simulated time factor (default: the demo's fast clock, else 1)."),
    ] = None,
    demo_timeout: Annotated[
        float, typer.Option(help="Seconds the demo waits for the outcomes.")
    ] = DEMO_TIMEOUT_S,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="A module the worker imports (repeatable): your result tasks "
            "(CMVOICE_RESULT_TASKS) then run here, and the worker consumes their queue.",
        ),
    ] = None,
) -> None:
    """Run everything on this machine: Redis, the simulator, the receiver, a worker, Flower."""
    from cmvoice.config import get_settings
    from cmvoice.dev import DEMO_TIME_SCALE, DevOptions, run_dev

    settings = get_settings()
    options = DevOptions(
        receiver_port=receiver_port,
        simulator_port=simulator_port,
        flower_port=flower_port,
        data_dir=data_dir or settings.data_dir,
        time_scale=time_scale if time_scale is not None else (DEMO_TIME_SCALE if demo else 1.0),
        demo=demo,
        demo_timeout_s=demo_timeout,
        includes=tuple(include or ()),
    )
    raise typer.Exit(run_dev(settings, options, console()))


def keygen() -> None:
    """Print a new key for CMVOICE_ENCRYPTION_KEY (put the newest first to rotate keys)."""
    from cmvoice.crypto import generate_key

    print(generate_key())
