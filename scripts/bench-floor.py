#!/usr/bin/env python3
"""Guardrails against the floor: an allow-all webhook on the same stack (../shared/bench/floor-webhook).

Builds the floor (from a copy of its sources, in a temporary CARGO_TARGET_DIR: shared/ is read-only)
and Guardrails (release), writes the request bodies (examples/bench_inputs), then, for each body,
serves it with the floor and with Guardrails alternately (same certificate, wrk client, thread and
connection count) and prints each server's median throughput and latency and Guardrails/floor
ratios. Last, Guardrails with the shipped policies plus 1,000 generated ones under many connections:
throughput and the server's resident memory (VmRSS after each round, VmHWM at the end).

Needs wrk (Debian: apt-get install wrk). Standard library only.

usage: scripts/bench-floor.py [--rounds 3] [--duration 5] [--connections 16] [--threads 1]
                              [--rss-connections 256] [--floor-target DIR] [--skip-build]
                              [--no-decision-cache]

Each body is the same request again and again, so Guardrails answers all but the first from its
decision cache; --no-decision-cache measures every request as if seen for the first time.
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
FLOOR_SRC = os.path.join(ROOT, "..", "shared", "bench", "floor-webhook")
# Bodies from benches/support/bodies.rs (SERVED), with what each should be answered.
# The last flag: Guardrails serves the shipped policies plus 1,000 generated ones.
BODIES = [
    ("app_sync_prod_denied", "developer's sync of a prod Application (denied)", '"allowed":false', False),
    ("app_status_bookkeeping_large", "controller status write, large Application", '"allowed":true', False),
    ("kubewarden_deployment_update", "Deployment UPDATE", '"allowed":true', False),
    ("app_sync_prod_denied", "the same sync, 1,000 extra policies", '"allowed":false', True),
]
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
"""


def run(cmd, **kwargs):
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, process, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def to_ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port, body, args, connections):
    env = dict(os.environ, BODY=body)
    out = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{connections}", f"-d{args.duration}s", "--latency",
         "-s", args.wrk_script, f"https://127.0.0.1:{port}/validate"],
        check=True, capture_output=True, text=True, env=env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: to_ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    if errors or socket_errors:
        raise RuntimeError(f"wrk reported errors:\n{out}")
    return rps, latency.get("50", 0.0), latency.get("99", 0.0)


class Server:
    def __init__(self, command, port):
        self.port = port
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port, self.process)

    def check(self, body, expected):
        out = subprocess.run(
            ["curl", "-sk", "--data-binary", f"@{body}", "-H", "content-type: application/json",
             f"https://127.0.0.1:{self.port}/validate"], check=True, capture_output=True, text=True).stdout
        if expected not in out.replace(" ", ""):
            raise RuntimeError(f"unexpected answer for {body}: {out[:300]}")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rss-connections", type=int, default=256)
    parser.add_argument("--floor-target", help="CARGO_TARGET_DIR for the floor (default: temporary)")
    parser.add_argument("--skip-build", action="store_true", help="use already built binaries")
    parser.add_argument("--no-decision-cache", action="store_true",
                        help="serve with --decision-cache-entries 0: every request evaluated, as if new")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found (Debian: apt-get install wrk)")

    work = tempfile.mkdtemp(prefix="guardrails-bench-")
    floor_target = args.floor_target or os.path.join(work, "floor-target")
    floor_src = os.path.join(work, "floor-webhook")
    shutil.copytree(FLOOR_SRC, floor_src, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    for path, dirs, files in os.walk(floor_src):
        os.chmod(path, 0o755)
        for name in files:
            os.chmod(os.path.join(path, name), 0o644)
    if not args.skip_build:
        run(["cargo", "build", "--release", "--manifest-path", os.path.join(floor_src, "Cargo.toml")],
            env=dict(os.environ, CARGO_TARGET_DIR=floor_target))
        run(["cargo", "build", "--release", "--bin", "guardrails", "--example", "bench_inputs"], cwd=ROOT)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    guardrails = os.path.join(target, "release", "guardrails")
    floor = os.path.join(floor_target, "release", "floor-webhook")
    inputs = os.path.join(work, "inputs")
    run([os.path.join(target, "release", "examples", "bench_inputs"), "write", inputs, "1000"])
    certs = os.path.join(work, "certs")
    run([guardrails, "certs", "--service", "localhost", "--namespace", "bench", "--out", certs],
        stdout=subprocess.DEVNULL)
    cert, key = os.path.join(certs, "tls.crt"), os.path.join(certs, "tls.key")
    args.wrk_script = os.path.join(work, "post.lua")
    with open(args.wrk_script, "w") as f:
        f.write(WRK_SCRIPT)

    def start(kind, extra=()):
        port = free_port()
        if kind == "floor":
            return Server([floor, f"127.0.0.1:{port}", cert, key], port)
        cache = ["--decision-cache-entries", "0"] if args.no_decision_cache else []
        return Server([guardrails, "serve", "--listen", f"127.0.0.1:{port}", "--tls-cert", cert,
                       "--tls-key", key, "--no-reload", *cache, *extra], port)

    print(f"# {os.cpu_count()} CPUs; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
          f"HTTPS keep-alive, {args.rounds} rounds alternating floor and Guardrails (shipped "
          f"policies, audit log to /dev/null); medians")
    print()
    # "ratio": of the two medians. "per round": each round's Guardrails run over the floor run
    # next to it, median (range); steadier when the machine drifts during the series.
    print("| body | bytes | floor req/s | Guardrails req/s | ratio | per round | floor p50/p99 ms | Guardrails p50/p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    many = ["--policies", os.path.join(inputs, "policies"), "--config", os.path.join(inputs, "config.yaml")]
    for name, description, expected, many_policies in BODIES:
        body = os.path.join(inputs, "bodies", f"{name}.json")
        results = {"floor": [], "guardrails": []}
        for round_index in range(args.rounds):
            order = ["floor", "guardrails"] if round_index % 2 == 0 else ["guardrails", "floor"]
            for kind in order:
                server = start(kind, many if many_policies and kind == "guardrails" else ())
                try:
                    server.check(body, '"allowed":true' if kind == "floor" else expected)
                    results[kind].append(wrk(server.port, body, args, args.connections))
                finally:
                    server.stop()
        med = {k: [statistics.median(r[i] for r in v) for i in range(3)] for k, v in results.items()}
        spread = {k: (min(r[0] for r in v), max(r[0] for r in v)) for k, v in results.items()}
        per_round = [g[0] / f[0] for g, f in zip(results["guardrails"], results["floor"])]
        print(f"| {description} | {os.path.getsize(body)} | {med['floor'][0]:,.0f} "
              f"({spread['floor'][0]:,.0f}–{spread['floor'][1]:,.0f}) | {med['guardrails'][0]:,.0f} "
              f"({spread['guardrails'][0]:,.0f}–{spread['guardrails'][1]:,.0f}) | "
              f"**{med['guardrails'][0] / med['floor'][0]:.2f}** | {statistics.median(per_round):.2f} "
              f"({min(per_round):.2f}–{max(per_round):.2f}) | {med['floor'][1]:.2f} / {med['floor'][2]:.2f} | "
              f"{med['guardrails'][1]:.2f} / {med['guardrails'][2]:.2f} |", flush=True)

    # 1,000 generated policies, many connections: throughput and memory.
    print()
    print(f"# Guardrails with the shipped + 1,000 generated policies (examples/bench_inputs), "
          f"wrk -t{args.threads} -c{args.rss_connections} -d{args.duration}s, one server, {args.rounds} rounds")
    print()
    print("| body | req/s | p50/p99 ms | VmRSS after round (MiB) |")
    print("|---|---|---|---|")
    started = time.time()
    server = start("guardrails", ["--policies", os.path.join(inputs, "policies"),
                                  "--config", os.path.join(inputs, "config.yaml")])
    ready = time.time() - started
    try:
        idle = status_kib(server.process.pid, "VmRSS")
        for name in ["team_app_sync_prod", "app_sync_prod_denied"]:
            body = os.path.join(inputs, "bodies", f"{name}.json")
            server.check(body, '"allowed":false')
            rows, rss = [], []
            for _ in range(args.rounds):
                rows.append(wrk(server.port, body, args, args.rss_connections))
                rss.append(status_kib(server.process.pid, "VmRSS") / 1024)
            print(f"| {name} | {statistics.median(r[0] for r in rows):,.0f} | "
                  f"{statistics.median(r[1] for r in rows):.2f} / {statistics.median(r[2] for r in rows):.2f} | "
                  f"{', '.join(f'{m:.1f}' for m in rss)} |", flush=True)
        peak = status_kib(server.process.pid, "VmHWM")
    finally:
        server.stop()
    print()
    print(f"Listening {ready:.2f} s after start with 1,008 policies; RSS idle {idle / 1024:.1f} MiB, "
          f"peak (VmHWM) {peak / 1024:.1f} MiB.")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
