"""Grouping pings by vehicle without sorting Python strings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def groups_by_vehicle(
    vehicle_id: Sequence[str], ts_ms: npt.NDArray[np.int64]
) -> list[tuple[str, npt.NDArray[np.intp]]]:
    """(vehicle, row indices in (ts, arrival) order) per vehicle, in first-seen order.

    A dict factorises the ids (O(n), no string sort), then one integer lexsort orders rows.
    """
    if len(vehicle_id) and len(set(vehicle_id)) == 1:
        return [(vehicle_id[0], np.argsort(ts_ms, kind="stable"))]
    names, code = factorise(vehicle_id)
    return groups_by_code(names, code, ts_ms)


def factorise(vehicle_id: Sequence[str]) -> tuple[list[str], npt.NDArray[np.int64]]:
    """(distinct ids in first-seen order, each row's index into them): a dict, O(n)."""
    codes: dict[str, int] = {}
    code = np.fromiter(
        (codes.setdefault(v, len(codes)) for v in vehicle_id), np.int64, len(vehicle_id)
    )
    return list(codes), code


def groups_by_code(
    names: Sequence[str], code: npt.NDArray[np.int64], ts_ms: npt.NDArray[np.int64]
) -> list[tuple[str, npt.NDArray[np.intp]]]:
    """Like :func:`groups_by_vehicle` for rows already coded as indices into ``names``."""
    n = len(code)
    order = np.lexsort((np.arange(n), ts_ms, code))
    bounds = np.searchsorted(code[order], np.arange(len(names) + 1))
    return [
        (names[k], order[bounds[k] : bounds[k + 1]])
        for k in range(len(names))
        if bounds[k + 1] > bounds[k]
    ]
