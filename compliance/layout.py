"""Column layout of the kernels' arrays (struct-of-arrays; one row per trip / stop / event).

Plain module-level ints so Numba folds them into constants. Kept apart from the kernels so
the engine, the tests' reference implementation and the benchmarks agree on one layout.
"""

from __future__ import annotations

from compliance.events import EventType

# ---- prepared route: segments per bounding box of PreparedRoute.chunk_box_m ----
CHUNK_SEGMENTS = 32

# ---- per-trip detector state: float64 vector of length N_STATE (timestamps: epoch ms) ----
S_N = 0  # pings processed
S_LAST_TS = 1  # ts of the last processed ping
S_LAST_LAT = 2
S_LAST_LON = 3
S_LAST_M = 4  # route_m of the last processed ping
S_ACC_TS = 5  # last accepted (not wild) fix
S_ACC_X = 6
S_ACC_Y = 7
S_WILD_N = 8  # consecutive rejected wild fixes
S_ANCHOR_M = 9  # last on-route matched distance (matching window anchor)
S_ANCHOR_TS = 10
S_PROGRESS = 11  # furthest on-route matched distance (monotone)
S_START_M = 12  # first matched distance, NaN before
S_V_MPS = 13  # smoothed recent progress speed, m/s (NaN unknown)
S_OFF = 14  # 1 while off_route is confirmed
S_OUT_N = 15  # consecutive pings outside the corridor
S_OUT_SINCE = 16
S_OUT_PATH_M = 17  # path driven since leaving the corridor
S_IN_N = 18  # consecutive pings back well inside while off
S_OFF_MAX_M = 19
S_ST_N = 20  # stationary cluster: pings, centroid, since
S_ST_X = 21
S_ST_Y = 22
S_ST_SINCE = 23
S_ST_ACTIVE = 24
S_ST_OUT_N = 25
S_NEXT_STOP = 26  # first stop not yet resolved
S_AT_STOP = 27  # stop index being dwelt at, -1 none
S_CAND_STOP = 28  # stop whose radius the vehicle is inside (not yet arrived), -1
S_CAND_TS = 29
S_ON_TIME = 30
S_LATE_STOPS = 31
S_SP_SINCE = 32  # speeding candidate since (NaN none)
S_SP_ACTIVE = 33
S_SP_MAX = 34
S_SP_M0 = 35
S_SP_UNDER_N = 36
S_SP_UNDER_TS = 37
S_SP_LIMIT = 38
S_LATE = 39
S_LATE_STOP = 40
S_LOST = 41  # signal_lost emitted, waiting for a ping
S_STARTED = 42
S_COMPLETED = 43
S_COMPLETED_TS = 44
S_SPEED_KMH = 45  # last speed used (device or derived)
S_LAST_OFFSET = 46
S_LAST_ONROUTE = 47
S_RING_POS = 48
S_JUMP_N = 49  # consecutive fixes rejected for an implausible jump along the route
S_DEP_N = 50  # consecutive fixes outside the stop being dwelt at
S_DEP_TS = 51  # first of them
S_ELSE_N = 52  # consecutive fixes matched only on another part of the route
S_M1 = 53  # route_m of the previous two on-route matches (median filter)
S_M2 = 54
RING = 8  # (ts, route_m) pairs of on-route pings, for derived speed
S_RING = 55
S_GAP_FROM = S_RING + 2 * RING  # ts of the last fix before the latest signal gap (0 none)
# (checkpoint version 3 on: older states end here and are padded with NEW_STATE_TAIL)
S_OUT_X0 = S_GAP_FROM + 1  # where the run of outside fixes began (NaN none)
S_OUT_Y0 = S_GAP_FROM + 2
S_OUT_SIDE = S_GAP_FROM + 3  # its side of the route: +1 left, -1 right, 0 unknown
S_OUT_MOVED_N = S_GAP_FROM + 4  # consecutive outside fixes showing movement away
# (checkpoint version 5 on: version 3 and 4 states end here)
S_ST_OUT_X = S_GAP_FROM + 5  # the stationary cluster's pending outlying fix
S_ST_OUT_Y = S_GAP_FROM + 6
S_ST_OUT_TS = S_GAP_FROM + 7
S_ST_STILL = S_GAP_FROM + 8  # the cluster's latest fix: 1 standstill, -1 moving, 0 other
# (checkpoint version 6 on: version 5 states end here)
S_MOT_TS = S_GAP_FROM + 9  # the off-route motion check's reference fix (0 none): the
S_MOT_X = S_GAP_FROM + 10  # last accepted fix the check did not reject, with the
S_MOT_Y = S_GAP_FROM + 11  # device's speed and heading there (NaN none)
S_MOT_KMH = S_GAP_FROM + 12
S_MOT_HDG = S_GAP_FROM + 13
S_JUMP_TO_M = S_GAP_FROM + 14  # where the progress landed on its latest jump (NaN none)
S_PROGRESS_TS = S_GAP_FROM + 15  # when the furthest progress last advanced (NaN none)
N_STATE = S_GAP_FROM + 16
#: the state's length in checkpoint versions 1-2, 3-4, 5 and 6
N_STATE_V2 = S_GAP_FROM + 1
N_STATE_V4 = S_GAP_FROM + 5
N_STATE_V5 = S_GAP_FROM + 9
N_STATE_V6 = S_GAP_FROM + 14
#: the slots added since version 2, with their fresh values
NEW_STATE_TAIL = (
    *(float("nan"), float("nan"), 0.0, 0.0),
    *(float("nan"), float("nan"), 0.0, 0.0),
    *(0.0, float("nan"), float("nan"), float("nan"), float("nan")),
    *(float("nan"), float("nan")),
)

# ---- per-trip parameters: float64 vector ----
P_LENGTH_M = 0
P_CORRIDOR_M = 1
P_PLANNED_MPS = 2
P_DEFAULT_LIMIT = 3  # NaN none
P_PLANNED_END_MS = 4  # when the plan expects the trip to end, epoch ms
P_END_X = 5  # the route's last point, local metres
P_END_Y = 6
N_PARAM = 7

# ---- stops: float64 (n, N_STOPF), plan order ----
T_X = 0
T_Y = 1
T_M = 2
T_RADIUS = 3
T_WIN_START = 4  # NaN none
T_WIN_END = 5
T_PLANNED = 6
T_SERVICE_S = 7
T_OFFSET = 8
N_STOPF = 9

# ---- stop status: float64 (n, N_STOPS) ----
U_STATUS = 0  # see STATUS_*
U_ENTER_TS = 1
U_ARRIVED_TS = 2
U_DEPARTED_TS = 3
N_STOPS = 4
STATUS_PENDING = 0
STATUS_ARRIVED = 1
STATUS_DEPARTED = 2
STATUS_SKIPPED = 3
STATUS_NAMES = ("pending", "arrived", "departed", "skipped")

# ---- emitted events: int64 (cap, 3) [type, ping index or -1, stop index or -1], ts int64,
# float64 (cap, N_EVF) ----
E_TYPE = 0
E_PING = 1
E_STOP = 2
F_V0 = 0
F_V1 = 1
F_V2 = 2
F_LAT = 3
F_LON = 4
F_M = 5
N_EVF = 6
#: events one ping can emit at most (signal x2, off/back, stop x2, unplanned, speeding, late,
#: started, completed) with headroom
MAX_EVENTS_PER_PING = 16

EVENT_CODES: tuple[EventType, ...] = tuple(EventType)
EV_TRIP_STARTED = EVENT_CODES.index(EventType.TRIP_STARTED)
EV_STOP_ARRIVED = EVENT_CODES.index(EventType.STOP_ARRIVED)
EV_STOP_DEPARTED = EVENT_CODES.index(EventType.STOP_DEPARTED)
EV_OFF_ROUTE = EVENT_CODES.index(EventType.OFF_ROUTE)
EV_BACK_ON_ROUTE = EVENT_CODES.index(EventType.BACK_ON_ROUTE)
EV_UNPLANNED_STOP = EVENT_CODES.index(EventType.UNPLANNED_STOP)
EV_UNPLANNED_STOP_ENDED = EVENT_CODES.index(EventType.UNPLANNED_STOP_ENDED)
EV_SPEEDING = EVENT_CODES.index(EventType.SPEEDING)
EV_SPEEDING_ENDED = EVENT_CODES.index(EventType.SPEEDING_ENDED)
EV_LATE = EVENT_CODES.index(EventType.LATE)
EV_BACK_ON_SCHEDULE = EVENT_CODES.index(EventType.BACK_ON_SCHEDULE)
EV_SIGNAL_LOST = EVENT_CODES.index(EventType.SIGNAL_LOST)
EV_SIGNAL_RESTORED = EVENT_CODES.index(EventType.SIGNAL_RESTORED)
EV_TRIP_COMPLETED = EVENT_CODES.index(EventType.TRIP_COMPLETED)
#: the kernels' own code for a trip ended because its vehicle stopped reporting: a
#: ``trip_completed`` with ``ended_by`` "no_signal" (compliance.convert)
EV_TRIP_ABANDONED = len(EVENT_CODES)
#: ... and for a trip that ended at its last fix, standing at the route end, as the
#: silence after it showed: a plain ``trip_completed`` at that fix (compliance.convert)
EV_TRIP_ENDED_QUIET = len(EVENT_CODES) + 1
