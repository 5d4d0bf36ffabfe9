"""OpenAPI links: which answer's values feed which operation (OpenAPI 3.1 §4.8.20).

They tell a client (and schemathesis' stateful tests) how the main flows chain: a
created trip leads to the trip, its orders, their proof of delivery and tracking, and
the vehicle's track; a page of alerts to acknowledging one. Declared on the producing
route as ``responses={201: {"links": {...}}}``; FastAPI merges them into the schema.
"""

from __future__ import annotations

from typing import Any


def link(method: str, path: str, description: str, **parameters: str) -> dict[str, Any]:
    """A link to the operation ``method path``; each parameter named after the target's
    path parameter, with a runtime expression (``$response.body#/trip_id``) as value."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    return {
        "operationRef": f"#/paths/{pointer}/{method.lower()}",
        "description": description,
        "parameters": parameters,
    }
