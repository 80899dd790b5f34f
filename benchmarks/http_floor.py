"""The HTTP floor: what the server stack of `nae serve` costs per request with no scoring at all,
and so the best HTTP / raw ONNX Runtime ratio any service on it could reach on this machine.

    .venv/bin/python -m benchmarks.http_floor [--seconds 3] [--rounds 3]

(run as a module from the repository root, like benchmarks.service)

A bare ASGI app reads each body as `/score` does (``Exchange.body``: one buffer, copied once)
and answers with as many bytes as the `.npy` scores would take, under uvicorn with the protocol
and malloc settings of `nae serve`. It is loaded with the benchmark's own `.npy` requests
(1, 1,000 and 10,000 events) by wrk, in paired rounds with raw ONNX Runtime on the benchmark
model. With one client every request is serial (receive, score, answer), so a service that
added nothing to the bare app would reach at most

    ceiling = t_ort / (t_ort + t_bare)

where t_ort is one ONNX Runtime call on the batch and t_bare the bare app's time per request
(1 / its requests per second). Results: benchmarks/results/http_floor.json; discussed in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from starlette.types import Receive, Scope, Send

from benchmarks.service import (
    ROOT,
    events_from_seed,
    machine,
    measure_raw,
    measure_wrk,
    request_for,
    running_server,
    write_benchmark_bundle,
)
from service.api.exchange import Exchange
from service.bundle import load_bundle
from service.memory import BodyBudget
from service.runtime import OnnxModel

BUDGET = BodyBudget(1 << 40)  # bodies are taken and given back as in the service, uncapped

RESULTS = ROOT / "benchmarks" / "results" / "http_floor.json"
BATCH_SIZES = (1, 1_000, 10_000)
CLIENT_COUNTS = (1, 8)
SCORE_BYTES = 4  # float32 per event in the answer
NPY_HEADER_BYTES = 128


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body like /score, answer with the size of its .npy scores; 200 to any GET."""
    if scope["type"] != "http":
        return
    answer = b""
    if scope["method"] == "POST":
        exchange = Exchange(scope, receive, {}, BUDGET)
        body = await exchange.body(1 << 30)
        BUDGET.release(exchange.reserved)
        n_events = max(1, (len(body) - NPY_HEADER_BYTES) // (19 * 4 * 4))
        answer = bytes(NPY_HEADER_BYTES + SCORE_BYTES * n_events)
    headers = [(b"content-type", b"application/x-npy"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def serve_bare(port: int) -> None:
    """Run the bare app as `nae serve` runs the service (same protocol, malloc settings)."""
    import uvicorn

    from service.memory import keep_freed_memory
    from service.server import uvicorn_config
    from service.settings import Settings

    keep_freed_memory()
    config = uvicorn_config(bare_app, Settings(), host="127.0.0.1", port=port, log_level="warning")
    uvicorn.Server(config).run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="length of each wrk run (s)")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per configuration")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, object] = {"machine_before": machine(), "settings": vars(args)}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        models_dir = Path(scratch) / "models"
        bundle_dir = write_benchmark_bundle(models_dir)
        model = OnnxModel(load_bundle(bundle_dir), bundle_dir, intra_op_threads=1)
        command = [sys.executable, "-m", "benchmarks.http_floor", "serve"]
        with running_server(models_dir, command=command) as server:
            for batch in BATCH_SIZES:
                x = events_from_seed(batch, seed=3)
                request = request_for("npy", x)
                server.post(request)
                for clients in CLIENT_COUNTS:
                    t_ort, t_bare, cpu = [], [], []
                    for _ in range(args.rounds):
                        raw = measure_raw(model, x, args.seconds / 2)
                        bare = measure_wrk(server, request, batch, clients, args.seconds)
                        t_ort.append(batch / raw.events_per_s)
                        t_bare.append(batch / bare.events_per_s)
                        cpu.append(bare.cpu_us_per_event * batch)
                    ceilings = [o / (o + b) for o, b in zip(t_ort, t_bare, strict=True)]
                    rows.append(
                        {
                            "events_per_request": batch,
                            "body_bytes": len(request.body),
                            "clients": clients,
                            "bare_requests_per_s": 1 / statistics.median(t_bare),
                            "bare_cpu_us_per_request": statistics.median(cpu),
                            "ort_us_per_call": statistics.median(t_ort) * 1e6,
                            "serial_ceiling": statistics.median(ceilings),
                            "serial_ceiling_min": min(ceilings),
                            "serial_ceiling_max": max(ceilings),
                        }
                    )
                    print(json.dumps(rows[-1]), flush=True)
    results["rows"] = rows
    results["machine_after"] = machine()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(
        "\n| events/request | body bytes | clients | bare requests/s | bare server CPU us/request"
        " | ORT us/call | 1-client ceiling t_ort/(t_ort+t_bare) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ceiling = (
            f"{row['serial_ceiling']:.1%} ({row['serial_ceiling_min']:.1%}-"
            f"{row['serial_ceiling_max']:.1%})"
            if row["clients"] == 1
            else "-"
        )
        print(
            f"| {row['events_per_request']:,} | {row['body_bytes']:,} | {row['clients']} "
            f"| {row['bare_requests_per_s']:,.0f} | {row['bare_cpu_us_per_request']:.0f} "
            f"| {row['ort_us_per_call']:.0f} | {ceiling} |"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve_bare(int(sys.argv[sys.argv.index("--port") + 1]))
    else:
        main()
