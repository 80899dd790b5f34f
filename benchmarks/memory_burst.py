"""Memory under a burst of large bodies (issue 10, item 4): 20 clients each send a 30 MiB body at
once, slowly enough that all of them are in flight together; the server's resident memory
(VmRSS) is read before, at its peak, and 5 s after the clients have gone.

    .venv/bin/python -m benchmarks.memory_burst [--before /tmp/before]

(run as a module from the repository root; ``--before`` as in benchmarks/cost.py, an older
checkout of service/ and training/, measured the same way). Prints one line per server and
writes benchmarks/results/memory_burst.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.service import (
    BUNDLE_NAME,
    ROOT,
    Server,
    machine,
    running_server,
    write_benchmark_bundle,
)

RESULTS = ROOT / "benchmarks" / "results" / "memory_burst.json"
CLIENTS = 20
BODY_BYTES = 30 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


def _client(port: int, statuses: list[str], start: threading.Barrier) -> None:
    head = (
        f"POST /score?model={BUNDLE_NAME} HTTP/1.1\r\nHost: t\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"X-Shape: 1,{BODY_BYTES // 4}\r\nContent-Length: {BODY_BYTES}\r\n\r\n"
    ).encode()
    chunk = bytes(CHUNK_BYTES)
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        start.wait()
        connection.sendall(head)
        try:
            for _ in range(BODY_BYTES // CHUNK_BYTES):
                connection.sendall(chunk)
                time.sleep(0.05)  # ~1.5 s per body: all 20 are in flight together
            answer = connection.recv(200)
        except OSError as exc:  # the server may close after answering early
            answer = repr(exc).encode()
    statuses.append(answer.split(b"\r\n", 1)[0].decode(errors="replace"))


def burst(server: Server) -> dict[str, object]:
    idle = server.memory_mib()["VmRSS"]
    statuses: list[str] = []
    start = threading.Barrier(CLIENTS)
    threads = [
        threading.Thread(target=_client, args=(server.port, statuses, start))
        for _ in range(CLIENTS)
    ]
    peak = idle
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        peak = max(peak, server.memory_mib()["VmRSS"])
        time.sleep(0.05)
    time.sleep(5.0)
    return {
        "idle_rss_mib": idle,
        "peak_rss_mib": peak,
        "rss_5s_after_mib": server.memory_mib()["VmRSS"],
        "statuses": sorted(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="older service/ + training/ to compare")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, object] = {"machine_before": machine()}
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = Path(scratch) / "models"
        write_benchmark_bundle(models_dir)
        commands = {"after": None}
        if args.before is not None:
            commands["before"] = [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(args.before.resolve())!r}); "
                "sys.argv[0] = 'nae'; from training.cli import main; main()",
                "serve", "--models", str(models_dir), "--host", "127.0.0.1",
            ]  # fmt: skip
        for name, command in commands.items():
            with running_server(models_dir, command=command) as server:
                results[name] = burst(server)
            print(f"{name}: {results[name]}", flush=True)
    results["machine_after"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
