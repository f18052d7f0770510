"""Peer for the PostgreSQL job-queue benchmark: procrastinate (PyPI), a
PostgreSQL-backed job queue people use today, draining N no-op jobs.

usage: procrastinate_peer.py DATABASE_URL N CONCURRENCY
Prints {"seconds": ..., "jobs": N} (time to drain, enqueue untimed).
The database must be empty; the schema is applied first.
"""
import asyncio
import json
import sys
import time

import procrastinate


def main() -> None:
    url, n, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async def run() -> float:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            left = n
            while left > 0:
                k = min(left, 5000)
                await noop.batch_defer_async(*[{} for _ in range(k)])
                left -= k
            start = time.perf_counter()
            await app.run_worker_async(
                concurrency=concurrency,
                wait=False,
                install_signal_handlers=False,
            )
            return time.perf_counter() - start

    seconds = asyncio.run(run())
    print(json.dumps({"seconds": seconds, "jobs": n}))


if __name__ == "__main__":
    main()
