"""Every event and snapshot of the simulator's accuracy scenarios, as JSON lines.

For refactors of the kernels that must not change a single event: run it before and
after on the same commit's scenarios and compare the files (``cmp``, or the printed
sha256 per scenario). The scenarios are those of ``benchmarks.accuracy`` (seeded, every
fault kind) at several fix intervals, noise levels and outlier rates; each one's
events and 60 s snapshots (ETAs included) go to ``OUT/<name>.jsonl``, and every ping's
match result (``route_m``, ``offset_m``, ``on_route`` of the speculative run over the
whole input as one batch) to ``OUT/<name>.matches`` as raw float64/int8 bytes.

    .venv/bin/python -m benchmarks.events_dump --out /tmp/events-before [--vehicles 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

from compliance.replay import load_pings_csv, load_plans, prepare_engine, replay
from simulator.faults import parse_faults
from simulator.gps import GpsConfig
from simulator.offline import write
from simulator.scenario import ScenarioConfig

#: name -> (fix interval s, GPS sigma m, outlier rate, seed)
SCENARIOS: dict[str, tuple[int, float, float, int]] = {
    "default_5s": (5, 8.0, 0.02, 1),
    "sparse_20s": (20, 8.0, 0.02, 2),
    "noisy_10s": (10, 12.0, 0.05, 3),
    "dense_1s": (1, 5.0, 0.01, 4),
    "sparse_30s": (30, 8.0, 0.02, 5),
}


def dump(name: str, vehicles: int, out: Path) -> tuple[str, int]:
    interval, sigma, outliers, seed = SCENARIOS[name]
    cfg = ScenarioConfig(
        vehicles=vehicles,
        seed=seed,
        interval_s=interval,
        faults=parse_faults(None),
        gps=GpsConfig(sigma_m=sigma, outlier_rate=outliers),
    )
    with tempfile.TemporaryDirectory(prefix="rw-events-") as tmp:
        folder = Path(tmp)
        write(cfg, folder)
        plans = load_plans(folder / "plans.json")
        pings = load_pings_csv(folder / "pings.csv")
        lines = [json.dumps(e, sort_keys=True) + "\n" for e in replay(plans, pings, 60.0)]
        res = prepare_engine(plans).process(pings, int(pings.ts_ms.max()))
    data = "".join(lines).encode()
    (out / f"{name}.jsonl").write_bytes(data)
    matches = res.route_m.tobytes() + res.offset_m.tobytes() + res.on_route.tobytes()
    (out / f"{name}.matches").write_bytes(matches)
    return hashlib.sha256(data + matches).hexdigest(), len(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="default: a new temporary folder")
    ap.add_argument("--vehicles", type=int, default=100)
    ap.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="default: all")
    args = ap.parse_args()
    args.out = args.out or Path(tempfile.mkdtemp(prefix="rw-events-"))
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"events and snapshots in {args.out}")
    for name in args.only or SCENARIOS:
        t0 = time.perf_counter()
        digest, n = dump(name, args.vehicles, args.out)
        print(f"{name:<12} {n:>8} lines  sha256 {digest}  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
