#!/usr/bin/env python3
"""Load-test a local `guardrails serve --dev` over HTTPS keep-alive and report throughput, latency
and the server's memory. Standard library only.

usage: scripts/load.py [--binary target/release/guardrails] [--requests 20000] [--connections 4]
"""
import argparse
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "admission",
                       "kubewarden-echo-deployment-update_accept.admissionrequest.json")


def rss_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/guardrails")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--port", type=int, default=18443)
    args = parser.parse_args()

    with open(FIXTURE) as f:
        request = json.load(f)
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": request}).encode()
    ca = os.path.join(tempfile.mkdtemp(), "ca.pem")
    server = subprocess.Popen(
        [args.binary, "serve", "--dev", "--dev-ca-out", ca, "--listen", f"127.0.0.1:{args.port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(ca) and os.path.getsize(ca) > 0:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        idle = rss_kib(server.pid)
        context = ssl.create_default_context(cafile=ca)
        latencies = []
        lock = threading.Lock()
        per_connection = args.requests // args.connections

        def worker():
            conn = http.client.HTTPSConnection("localhost", args.port, context=context)
            mine = []
            for _ in range(per_connection):
                start = time.perf_counter()
                conn.request("POST", "/validate", body, {"content-type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                mine.append(time.perf_counter() - start)
                assert response.status == 200 and b'"allowed":true' in payload, payload[:200]
            conn.close()
            with lock:
                latencies.extend(mine)

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        loaded, peak = rss_kib(server.pid)
        latencies.sort()
        pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e6
        print(json.dumps({
            "requests": len(latencies), "connections": args.connections,
            "seconds": round(elapsed, 2), "requests_per_second": round(len(latencies) / elapsed),
            "client_latency_us": {"p50": round(pct(0.5)), "p99": round(pct(0.99))},
            "server_rss_kib": {"idle": idle[0], "after_load": loaded, "peak": peak},
            "body_bytes": len(body),
        }, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()
