"""Campaign enqueue: rows validated and enqueued per second, next to a raw redis-py pipeline.

Generates a 100,000-row notification CSV (and a 20,000-row one), runs the code of
``cmvoice campaign start`` on each in a child process against a private Redis (validation,
calling rules, duplicate check, an encrypted ledger record and a backlog entry per row, campaign
indexes, checkpoint), then, in the same run, writes as many records of the same size (one HSET
and one ZADD per row) with a bare redis-py pipeline.
Prints both rates, their ratio, and each child's peak memory: flat in the file size, since the
file is streamed. Figures only; nothing is asserted.

Run: ``python -m bench.enqueue [--rows 100000] [--profile]`` (or ``make bench`` for all).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from cmvoice.embedded_redis import EmbeddedRedis
from cmvoice.keyspace import Keys

CALLER = "+31761234567"
#: Commands per raw pipeline execution: the same batch size as the campaign's.
RAW_BATCH = 1000


def write_csv(path: Path, rows: int) -> None:
    """A campaign file: a distinct valid mobile number and a personal prompt per row."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["callee", "prompt", "max-replays", "auto-replay"])
        for n in range(rows):
            prompt = f"Hello, your parcel {n:07d} will be delivered tomorrow between 9 and 12."
            writer.writerow([f"+316{20000000 + n:08d}", prompt, "1", "true"])


def child(args: argparse.Namespace) -> None:
    """One ``campaign start`` in this fresh process; prints its figures as JSON."""
    os.environ["CMVOICE_BROKER_URL"] = args.redis_url
    from cmvoice.campaigns.enqueue import start_campaign
    from cmvoice.config import Settings
    from cmvoice.runtime import Runtime, set_runtime

    runtime = Runtime.from_settings(Settings(broker_url=args.redis_url))
    set_runtime(runtime)
    template = {"caller": CALLER, "voice": {"language": "en-GB", "gender": "Female", "number": 1}}
    profiler: Any = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    report = start_campaign(
        runtime,
        Path(args.child),
        "notification",
        template=template,
        errors_path=Path(args.child).with_suffix(".errors.csv"),
    )
    elapsed = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    figures = {
        "rows": report.rows_read,
        "enqueued": report.enqueued,
        "elapsed_s": elapsed,
        "rows_per_s": report.rows_read / elapsed,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(figures))


def run_child(path: Path, redis_url: str, profile: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.enqueue", "--child", str(path)]
    command += ["--redis-url", redis_url, *(["--profile"] if profile else [])]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"enqueue child failed:\n{done.stderr[-3000:]}")
    if profile:
        print(done.stderr, file=sys.stderr)
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def sample_record(client: redis.Redis) -> dict[bytes, bytes]:
    """The fields of one call record the campaign wrote."""
    for key in client.scan_iter(match=Keys().call("*"), count=1000):
        if client.type(key) == b"hash":
            return client.hgetall(key)  # type: ignore[return-value]
    raise RuntimeError("the campaign wrote no call record")


def raw_pipeline_rate(client: redis.Redis, count: int, record: dict[bytes, bytes]) -> float:
    """Rows per second written by a bare pipeline (a record HSET and a backlog ZADD each),
    RAW_BATCH rows per round trip."""
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for n in range(1, count + 1):
        pipe.hset(f"bench:call:{n}", mapping=record)  # type: ignore[arg-type]
        pipe.zadd("bench:backlog", {str(n): n})
        if n % RAW_BATCH == 0:
            pipe.execute()
    pipe.execute()
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--small-rows", type=int, default=20_000)
    parser.add_argument("--profile", action="store_true", help="cProfile the large run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="cmvoice-bench-") as tmp:
        workdir = Path(tmp)
        with EmbeddedRedis(data_dir=workdir / "redis", persistent=False) as server:
            client = redis.Redis.from_url(server.url)
            runs = {}
            for rows in (args.small_rows, args.rows):
                path = workdir / f"campaign-{rows}.csv"
                write_csv(path, rows)
                client.flushall()
                runs[rows] = run_child(path, server.url, args.profile and rows == args.rows)
                runs[rows]["file_mib"] = path.stat().st_size / 2**20
            large = runs[args.rows]
            # The baseline writes a real record of this run, as many times.
            record = sample_record(client)
            record_bytes = sum(len(k) + len(v) for k, v in record.items())
            client.flushall()
            raw = raw_pipeline_rate(client, large["rows"], record)
            client.close()
    print(f"enqueue: notification campaign, {args.rows:,} rows, batches of 1,000, one Redis")
    print(
        f"  campaign start   : {large['rows_per_s']:10,.0f} rows/s in {large['elapsed_s']:.1f} s"
        " (target >= 5,000)"
    )
    print(f"  raw redis-py     : {raw:10,.0f} rows/s (HSET of {record_bytes} B + ZADD)")
    print(f"  ratio            : {large['rows_per_s'] / raw:10.3f} (campaign rows / raw rows)")
    for rows, figures in runs.items():
        print(
            f"  peak RSS {rows:>7,} rows ({figures['file_mib']:5.1f} MiB file): "
            f"{figures['peak_rss_mib']:6.1f} MiB"
        )


if __name__ == "__main__":
    main()
