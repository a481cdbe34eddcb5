"""An open-loop HTTP/1.1 load generator: request i is sent at t0 + i/rate, whatever came back before.

    .venv/bin/python bench/loadgen.py URL --rate 500 --duration 20 --body-file body.json \\
        [--header 'Name: value' ...] [--id-header X-GitHub-Delivery --id-prefix run1] \\
        [--unique-json-field bench_nonce --sign-secret S [--signature-header X-Hub-Signature-256]] \\
        [--match '"stored":true'] [--timeout 10] [--max-connections 512] [--loop uvloop|asyncio]

wrk2 is not packaged here and wrk is closed-loop (a slow answer delays the next request, which hides the
slowness: coordinated omission). This one schedules every request up front and measures each latency from
its *scheduled* time, so a stall shows up in the percentiles of all the requests it delayed. Connections
are raw keep-alive HTTP/1.1 sockets from a pool; a new one is opened whenever none is idle (up to
--max-connections, after which requests wait for one, their wait counted). With --id-header, every request
carries a unique value (prefix + counter); with --unique-json-field the body (a JSON object) gets that
value as one more member, so every body differs too, and with --sign-secret each body is signed
(HMAC-SHA256, GitHub's `sha256=` form; the common start of the body is hashed once). Prints one JSON
object: achieved rate, p50/p90/p99/max latency, status counts, errors, and how many answers contained
--match.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import json
import os
import sys
import time
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit


class Connection(asyncio.Protocol):
    """One keep-alive connection; `exchange` sends one request and resolves with (status, body)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        end = head_end + 4 + length
        if len(self.buffer) < end:
            return
        status = int(head[0].split(" ", 2)[1])
        body = bytes(self.buffer[head_end + 4 : end])
        del self.buffer[:end]
        if any(line.lower() == "connection: close" for line in head[1:]):
            self.closed = True
        waiter, self.waiter = self.waiter, None
        if not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("server closed the connection"))

    def exchange(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: collections.deque[Connection] = collections.deque()
        self.waiting: collections.deque[asyncio.Future[Connection]] = collections.deque()
        self.open = 0
        self.opened = 0

    async def take(self) -> Connection:
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                return conn
            self.open -= 1
        if self.open >= self.limit:
            waiter: asyncio.Future[Connection] = asyncio.get_running_loop().create_future()
            self.waiting.append(waiter)
            return await waiter
        self.open += 1
        self.opened += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(Connection, self.host, self.port)
        except BaseException:
            self.open -= 1
            raise
        return conn

    def give_back(self, conn: Connection) -> None:
        if conn.closed:
            self.open -= 1
            conn.close()
            return
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: Connection) -> None:
        self.open -= 1
        conn.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(args: argparse.Namespace) -> dict[str, object]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path or "/"
    body: bytes = args.body
    headers = [f"Host: {url.netloc}", *args.header]
    head = f"{args.method} {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers)
    body_start = body.rstrip()[:-1] if args.unique_json_field else body  # the object without its "}"
    signer = hmac.new(args.sign_secret.encode(), body_start, hashlib.sha256) if args.sign_secret else None
    match = args.match.encode() if args.match else None

    pool = Pool(host, port, args.max_connections)
    loop = asyncio.get_running_loop()
    clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
    latencies: list[float] = []  # from the scheduled time: what the user of the service waits
    service: list[float] = []  # from the moment the bytes were written
    lags: list[float] = []  # sent - scheduled: the generator's own lateness (timer granularity, pool waits)
    by_second: collections.defaultdict[int, list[float]] = collections.defaultdict(list)
    t0 = 0.0
    statuses: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    matched = 0
    last_done = 0.0

    async def one(i: int, scheduled: float) -> None:
        nonlocal matched, last_done
        request = head
        request_id = f"{args.id_prefix}-{i}"
        if args.id_header:
            request += f"{args.id_header}: {request_id}\r\n"
        this_body = body
        if args.unique_json_field:
            this_body = body_start + f',"{args.unique_json_field}":"{request_id}"}}'.encode()
        if signer is not None:
            signing = signer.copy()
            signing.update(this_body[len(body_start) :])
            request += f"{args.signature_header}: sha256={signing.hexdigest()}\r\n"
        request += f"Content-Length: {len(this_body)}\r\n"
        payload = (request + "\r\n").encode() + this_body
        conn: Connection | None = None
        try:
            conn = await asyncio.wait_for(pool.take(), args.timeout)
            sent = clock()
            status, answer = await asyncio.wait_for(conn.exchange(payload), args.timeout)
        except Exception as exc:  # every failure is counted, none stops the run
            errors[type(exc).__name__] += 1
            if conn is not None:
                pool.discard(conn)
            return
        done = clock()
        pool.give_back(conn)
        last_done = max(last_done, done)
        latencies.append(done - scheduled)
        by_second[int(scheduled - t0)].append(done - scheduled)
        service.append(done - sent)
        lags.append(sent - scheduled)
        statuses[str(status)] += 1
        if match is not None and match in answer:
            matched += 1

    # A few warm connections so the first requests do not all pay a connect.
    warm = [await pool.take() for _ in range(min(args.warm_connections, args.max_connections))]
    for conn in warm:
        pool.give_back(conn)

    total = round(args.rate * args.duration)
    tasks: set[asyncio.Task[None]] = set()
    cpu_start = time.process_time()
    t0 = clock() + 0.01
    for i in range(total):
        scheduled = t0 + i / args.rate
        delay = scheduled - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_window = clock() - t0
    if tasks:
        await asyncio.wait(tasks)
    cpu = time.process_time() - cpu_start
    pool.close()

    ms = sorted(v * 1000 for v in latencies)
    service_ms = sorted(v * 1000 for v in service)
    lag_ms = sorted(v * 1000 for v in lags)
    ok = sum(n for code, n in statuses.items() if code.startswith("2"))
    return {
        "target_rate": args.rate,
        "duration_s": args.duration,
        "sent": total,
        "send_rate": round(total / sent_window, 1) if sent_window else None,
        "achieved_rate": round(ok / (last_done - t0), 1) if ok and last_done > t0 else 0.0,
        "completed": len(latencies),
        "ok_2xx": ok,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "matched": matched if match is not None else None,
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p90_ms": round(percentile(ms, 0.90), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(ms[-1], 2) if ms else None,
        "service_p50_ms": round(percentile(service_ms, 0.50), 2),
        "service_p99_ms": round(percentile(service_ms, 0.99), 2),
        "send_lag_p99_ms": round(percentile(lag_ms, 0.99), 2),
        "send_lag_max_ms": round(lag_ms[-1], 2) if lag_ms else None,
        "connections_opened": pool.opened,
        "loadgen_cpu_s": round(cpu, 2),
        "loop": type(loop).__module__.split(".")[0],
        # The seconds (by scheduled time) with the slowest answers: where a stall happened.
        "slowest_seconds": [
            {
                "second": second,
                "max_ms": round(max(values) * 1000, 1),
                "over_25ms": sum(v > 0.025 for v in values),
            }
            for second, values in sorted(by_second.items(), key=lambda item: -max(item[1]))[: args.slowest]
        ],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    parser.add_argument("--method", default="POST")
    parser.add_argument("--body-file")
    parser.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    parser.add_argument("--id-header", help="a header that gets a unique value per request")
    parser.add_argument("--id-prefix", default=f"lg{os.getpid()}")
    parser.add_argument("--unique-json-field", help="add the request's id to the JSON body under this name")
    parser.add_argument("--sign-secret", help="sign each body with HMAC-SHA256 (GitHub's sha256= form)")
    parser.add_argument("--signature-header", default="X-Hub-Signature-256")
    parser.add_argument("--match", help="count the answers whose body contains this text")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--warm-connections", type=int, default=4)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--slowest", type=int, default=5, help="how many of the slowest seconds to list")
    args = parser.parse_args()
    result: dict[str, object]
    try:
        import uvloop
    except ImportError:
        args.loop = "asyncio"
    args.body = Path(args.body_file).read_bytes() if args.body_file else b""
    result = uvloop.run(run(args)) if args.loop == "uvloop" else asyncio.run(run(args))
    print(json.dumps(result))
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
