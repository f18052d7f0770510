#!/usr/bin/env python3
"""Open-model mixed load against a running `kontextual serve` (issue 17).

Requests are *scheduled* at a fixed arrival rate, whatever the server does;
latency is measured from each request's scheduled send time, so a slow
server cannot slow the load down and hide its own tail (no coordinated
omission). The mix: 70 % search, 20 % artifact GET, 10 % writes (PUT).

Usage:
  mixed_load.py URL COLLECTION RATE SECONDS [--queries FILE] [--ids FILE]
                [--writes FRACTION] [--unloaded N] [--floor]

--writes: the share of PUTs (default 0.1; GETs stay 20 %, search the rest).
--unloaded N: first, each query N times alone, one at a time (the slowest
  query's median is the "no query slower than 20 ms unloaded" figure).
--floor: after the run, the same rate again without writes (the peer in the
  same run): the report gives search p99 with writes / without.

Prints one JSON object: per kind, count, errors, p50/p90/p99/max in ms.
Only the standard library; connections are kept alive and opened as
needed (up to 256), so a stalled connection never delays another request.
"""

import asyncio
import json
import random
import sys
import time
import urllib.parse

QUERIES_DEFAULT = [
    "Mutex", "Arc", "Mutex Arc", "lock", "thread", "borrow", "iterator", "trait",
    "deploy", "retry policy", "how do traits work", "error handling", "async", "channel",
]


class Pool:
    def __init__(self, host, port, cap=256):
        self.host, self.port, self.cap = host, port, cap
        self.idle = []
        self.open = 0

    async def get(self, fresh=False):
        if self.idle and not fresh:
            return self.idle.pop()
        self.open += 1
        return await asyncio.open_connection(self.host, self.port)

    def put(self, conn):
        self.idle.append(conn)

    def drop(self, conn):
        self.open -= 1
        try:
            conn[1].close()
        except Exception:
            pass


async def exchange(pool, method, path, body=b""):
    # A kept-alive connection the server closed for idleness (its keep-alive
    # timeout) reads as an empty status line: retry once on a fresh one, as
    # HTTP clients do. The retry's time counts (from the scheduled send).
    reused = bool(pool.idle)
    try:
        return await exchange_once(pool, method, path, body)
    except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
        if not reused:
            raise
        return await exchange_once(pool, method, path, body, fresh=True)


class ConnectionClosed(Exception):
    pass


async def exchange_once(pool, method, path, body, fresh=False):
    conn = await pool.get(fresh)
    r, w = conn
    try:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
            "Content-Type: text/markdown\r\n\r\n"
        ).encode()
        w.write(head + body)
        await w.drain()
        status_line = await r.readline()
        if not status_line:
            raise ConnectionClosed()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while True:
            line = await r.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "content-length":
                length = int(v.strip())
            if k.lower() == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        if chunked:
            while True:
                size = int((await r.readline()).strip(), 16)
                await r.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await r.readexactly(length)
        pool.put(conn)
        return status
    except Exception:
        pool.drop(conn)
        raise


def pct(v, p):
    if not v:
        return None
    v = sorted(v)
    return round(v[min(len(v) - 1, int(p / 100 * len(v)))], 2)


async def unloaded(pool, queries, n):
    """Each query n times, alone: its median and worst latency in ms."""
    out = {}
    for q in queries:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await exchange(pool, "GET", f"/v1/search?q={urllib.parse.quote(q)}&limit=10")
            times.append((time.perf_counter() - t) * 1000)
        out[q] = {"p50": pct(times, 50), "max": round(max(times), 2)}
    return out


async def load(pool, collection, rate, seconds, writes, queries, ids, seed=17):
    rng = random.Random(seed)
    results = {"search": [], "get": [], "put": []}
    errors = {"search": 0, "get": 0, "put": 0}
    reasons = {}
    start = time.perf_counter() + 0.2
    n = int(rate * seconds)
    search_share = 0.8 - writes if ids else 1.0 - writes

    async def one(i):
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        x = rng.random()
        if x < search_share:
            kind = "search"
        elif x < 1.0 - writes:
            kind = "get"
        else:
            kind = "put"
        try:
            if kind == "search":
                q = urllib.parse.quote(rng.choice(queries))
                status = await exchange(pool, "GET", f"/v1/search?q={q}&limit=10")
            elif kind == "get":
                status = await exchange(pool, "GET", f"/v1/artifacts/{rng.choice(ids)}")
            else:
                body = f"# Load {i}\n\nwritten under load {rng.random()}\n".encode()
                status = await exchange(
                    pool, "PUT", f"/v1/artifacts?ref={collection}/load/{i % 500}.md", body
                )
            done = time.perf_counter()
            if status >= 400:
                errors[kind] += 1
                why = f"{kind} HTTP {status}"
                reasons[why] = reasons.get(why, 0) + 1
            else:
                results[kind].append((done - scheduled) * 1000)
        except Exception as e:
            errors[kind] += 1
            why = f"{kind} {type(e).__name__}: {e}"[:160]
            reasons[why] = reasons.get(why, 0) + 1

    await asyncio.gather(*(asyncio.create_task(one(i)) for i in range(n)))
    out = {"rate": rate, "seconds": seconds, "writes": writes, "error_reasons": reasons}
    for k, v in results.items():
        out[k] = {
            "count": len(v),
            "errors": errors[k],
            "p50": pct(v, 50),
            "p90": pct(v, 90),
            "p99": pct(v, 99),
            "max": round(max(v), 2) if v else None,
        }
    return out


async def main():
    url, collection, rate, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    queries, ids, writes, alone, floor = QUERIES_DEFAULT, [], 0.1, 0, False
    args = sys.argv[5:]
    for i, a in enumerate(args):
        if a == "--queries":
            queries = [q.strip() for q in open(args[i + 1]) if q.strip()]
        if a == "--ids":
            ids = [x.strip() for x in open(args[i + 1]) if x.strip()]
        if a == "--writes":
            writes = float(args[i + 1])
        if a == "--unloaded":
            alone = int(args[i + 1])
        if a == "--floor":
            floor = True
    u = urllib.parse.urlparse(url)
    pool = Pool(u.hostname, u.port or 80)
    out = {}
    if alone:
        per_query = await unloaded(pool, queries, alone)
        slowest = max(per_query, key=lambda q: per_query[q]["p50"])
        out["unloaded"] = {"queries": per_query, "slowest": slowest,
                           "slowest_p50": per_query[slowest]["p50"]}
    out.update(await load(pool, collection, rate, seconds, writes, queries, ids))
    if floor:
        without = await load(pool, collection, rate, seconds, 0.0, queries, ids)
        out["without_writes"] = without
        if out["search"]["p99"] and without["search"]["p99"]:
            out["search_p99_with_over_without"] = round(
                out["search"]["p99"] / without["search"]["p99"], 2)
    out["connections"] = pool.open
    print(json.dumps(out))


asyncio.run(main())
