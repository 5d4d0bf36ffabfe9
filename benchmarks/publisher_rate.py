"""Achieved MQTT publish rate of the live simulator at 10,000 vehicles.

Drives the fleet from one process against the local Mosquitto (127.0.0.1:1883) and, in
the same run, counts what actually arrived with ``mosquitto_sub`` (the C client) as the
independent confirmation/baseline. Prints both.

    .venv/bin/python benchmarks/publisher_rate.py --vehicles 10000 --seconds 30 --speedup 10

At ``--interval-s 5`` a fleet of 10,000 produces 2,000 fixes per simulated second, so the
offered rate is 2,000 x speedup messages/s once every vehicle is on the road;
``--rate`` caps it with the token bucket.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulator.publisher import LiveOptions, run_live
from simulator.scenario import ScenarioConfig


class SubCounter:
    """``mosquitto_sub`` printing one topic per line; counts this run's vehicles only."""

    def __init__(self, host: str, port: int, prefix: str, qos: int) -> None:
        exe = shutil.which("mosquitto_sub")
        if exe is None:
            raise SystemExit("mosquitto_sub not found (apt-get install mosquitto-clients)")
        self.count = 0
        self.first_s: float | None = None
        self.last_s = 0.0
        self._needle = f"fleet/{prefix}-".encode()
        self.proc = subprocess.Popen(
            [
                exe,
                "-h",
                host,
                "-p",
                str(port),
                "-t",
                "fleet/+/ping",
                "-q",
                str(qos),
                "-F",
                "%t",
                "-i",
                f"{prefix}-count",
            ],
            stdout=subprocess.PIPE,
        )
        self._thread = threading.Thread(target=self._read, name="mosquitto_sub-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(self._needle):
                now = time.monotonic()
                if self.first_s is None:
                    self.first_s = now
                self.last_s = now
                self.count += 1

    def stop(self, settle_s: float = 2.0) -> None:
        time.sleep(settle_s)
        self.proc.terminate()
        self.proc.wait(5)
        self._thread.join(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vehicles", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=30.0, help="wall seconds of publishing")
    ap.add_argument("--speedup", type=float, default=10.0)
    ap.add_argument("--interval-s", type=int, default=5)
    ap.add_argument("--rate", type=float, default=None, help="token-bucket cap, messages/s")
    ap.add_argument("--qos", type=int, choices=(0, 1), default=1)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--client", choices=("wire", "paho"), default="wire")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    args = ap.parse_args(argv)

    prefix = f"BENCH{uuid.uuid4().hex[:6]}"
    sim_s = args.seconds * args.speedup
    cfg = ScenarioConfig(
        vehicles=args.vehicles,
        seed=1,
        interval_s=args.interval_s,
        duration_s=sim_s,
        start_ms=int(time.time() * 1000),
        stagger_s=0.0,
        route_pool=200,
        id_prefix=prefix,
    )
    opts = LiveOptions(
        mqtt_url=f"mqtt://{args.host}:{args.port}",
        qos=args.qos,
        speedup=args.speedup,
        rate=args.rate,
        connections=args.connections,
        progress=False,
        client=args.client,
    )
    # QoS 0 for the counter: a QoS 1 subscription is capped by the broker's per-client
    # queue (max_queued_messages), which would undercount a fast publisher.
    sub = SubCounter(args.host, args.port, prefix, 0)
    time.sleep(0.5)  # let the subscription settle before the first publish
    t0 = time.monotonic()
    report = run_live(cfg, opts)
    total_s = time.monotonic() - t0
    sub.stop()
    span = (sub.last_s - sub.first_s) if sub.first_s is not None else 0.0
    print(
        f"vehicles={args.vehicles} interval={args.interval_s}s speedup={args.speedup} "
        f"qos={args.qos} client={args.client} connections={args.connections} rate_cap={args.rate}"
    )
    print(f"setup (build scenario) : {total_s - report.wall_s:.1f} s")
    print(
        f"publisher              : {report.messages} messages ({report.fixes} fixes) in "
        f"{report.wall_s:.1f} s = {report.rate:,.0f} msg/s; broker acks {report.acked}"
    )
    print(
        f"mosquitto_sub (C)      : {sub.count} received over {span:.1f} s = "
        f"{sub.count / span if span else 0:,.0f} msg/s "
        f"({sub.count / max(report.messages, 1):.2%} of published)"
    )
    sim_rate = report.sim_seconds / report.wall_s if report.wall_s else 0.0
    print(
        f"pacing                 : {report.sim_seconds} simulated s in {report.wall_s:.1f} s "
        f"= {sim_rate:.1f}x real time (target {args.speedup}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
