"""Simulated fleet: realistic trips, motion and trackers, with ground truth.

Modules (each imports only the standard library, NumPy, paho-mqtt and httpx):

- ``network``: a seeded, jittered street grid with arterials and a ring road around a
  configurable centre (WGS84 via a local tangent plane), speed limit per road class.
- ``routing``: Dijkstra on travel time; delivery routes depot -> stops -> depot (loops,
  out-and-back retraces, far clusters joined by the ring road); detours.
- ``plans``: CONTRACT §3 plan dicts (speed-limit ranges, stops with windows).
- ``motion``: every vehicle advanced in bulk per simulated second (limit, bends,
  acceleration and braking, traffic by hour, driver factor, halts and dwell).
- ``gps``: what trackers report (noise, multipath, skew, accuracy, heading, speed) and
  how it arrives (coverage-gap bursts, duplicates, reordering, malformed payloads).
- ``faults``: speeding, detours (rejoining or not), unplanned stops, running late,
  skipped stops, signal loss.
- ``drivers``: who drives each trip: a pace and at most one habit (a behavioural fault);
  one driver per vehicle by default, or a pool whose habits follow the drivers.
- ``scenario``: builds one seeded :class:`~simulator.scenario.Simulation`.
- ``truth``: expected CONTRACT §4 events (with ``tolerance_s``) derived from the true
  trajectory; ``scoring``: matching detections against them.
- ``offline``: ``routewatch simulate --out DIR`` files; ``publisher`` + ``mqttwire``: live
  mode over MQTT.
"""
