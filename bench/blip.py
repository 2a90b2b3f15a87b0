"""BLIP benchmark: pipelined small requests over loopback, two processes, next to raw websockets.

For each of ``--runs`` runs a fresh server process is started; the client
process (this one) sends ``--n`` requests of ``--size`` bytes without waiting,
then waits for every reply (the server echoes the body). The same pattern
with raw ``websockets`` binary messages (send all, read all echoes) gives
the limit we measure against. Also prints a request/response round trip
(send one, await its reply) for both. Medians are printed.

    .venv/bin/python bench/blip.py [--runs 5] [--n 10000] [--size 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from engine.replication import event_loop
from engine.replication.blip.connection import Message
from engine.replication.blip.socket import BlipSocket, Reply
from engine.replication.blip.websocket import BlipServer, connect


async def serve(kind: str) -> None:
    async def raw_echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async def on_blip(sock: BlipSocket) -> None:
        sock.register("echo", lambda m: Reply({}, m.body))
        sock.start()
        await sock.wait_closed()

    if kind == "raw":
        server = await ws_serve(raw_echo, "127.0.0.1", 0, compression=None, max_queue=None)
        port = next(iter(server.sockets)).getsockname()[1]
    else:
        blip = BlipServer(accepts_database=lambda _db: True, on_connection=on_blip)
        await blip.start("127.0.0.1", 0)
        port = blip.addresses[0][1]
    print(f"READY {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def run_raw(port: int, n: int, size: int) -> tuple[float, float]:
    payload = b"x" * size
    async with ws_connect(f"ws://127.0.0.1:{port}/", compression=None, max_queue=None) as ws:
        for _ in range(100):
            await ws.send(payload)
            await ws.recv()
        start = time.perf_counter()
        for _ in range(n):
            await ws.send(payload)
        for _ in range(n):
            await ws.recv()
        pipelined = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(1000):
            await ws.send(payload)
            await ws.recv()
        round_trip = (time.perf_counter() - start) / 1000
    return n / pipelined, round_trip


async def run_blip(port: int, n: int, size: int) -> tuple[float, float]:
    payload = b"x" * size
    sock = await connect(f"ws://127.0.0.1:{port}/db")
    sock.start()
    for _ in range(100):
        await sock.request("echo", None, payload)
    start = time.perf_counter()
    futures = [sock.send_request("echo", None, payload) for _ in range(n)]
    replies: list[Message] = await asyncio.gather(*futures)  # type: ignore[arg-type]
    pipelined = time.perf_counter() - start
    assert all(r.body == payload for r in replies)
    start = time.perf_counter()
    for _ in range(1000):
        await sock.request("echo", None, payload)
    round_trip = (time.perf_counter() - start) / 1000
    await sock.close()
    return n / pipelined, round_trip


def measure(kind: str, n: int, size: int) -> tuple[float, float]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        runner = run_raw if kind == "raw" else run_blip
        return event_loop.run(runner(port, n, size))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--serve", choices=["raw", "blip"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        event_loop.run(serve(args.serve))
        return
    results: dict[str, list[tuple[float, float]]] = {"raw": [], "blip": []}
    for _ in range(args.runs):  # interleaved, so that machine noise hits both alike
        for kind, runs in results.items():
            runs.append(measure(kind, args.n, args.size))
    print(f"{args.n} pipelined messages of {args.size} bytes, then 1,000 round trips; median of {args.runs} runs")
    print(f"{'':24s} {'msgs/s':>10s} {'round trip µs':>14s}")
    medians = {}
    for kind, label in (("raw", "raw websockets"), ("blip", "BLIP requests")):
        rate = statistics.median(r for r, _ in results[kind])
        rtt = statistics.median(t for _, t in results[kind]) * 1e6
        medians[kind] = rate
        print(f"{label:24s} {rate:10,.0f} {rtt:14.0f}")
    print(f"BLIP / raw = {medians['blip'] / medians['raw']:.2f} (target >= 0.5)")


if __name__ == "__main__":
    main()
