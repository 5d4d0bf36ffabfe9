"""The error answers every endpoint shares, documented in the OpenAPI schema.

Error bodies are always ``{"detail": ...}``: a message, or for 409/422 a list of
problems. FastAPI documents only 200 and 422 by itself, so ``document_errors(app)`` adds
to each operation of the generated schema what the app answers anyway, read from the
operation itself:

- it needs a token (``security``: ``api.auth`` / ``api.sse`` role checks) → 401 and 403;
- it has a path parameter (``{trip_id}``, ``{order_id}``, ...) naming a resource → 404;
- it takes a request body → 413 (``api.limits.BodySizeLimit`` guards every body) and
  400 (a body that is not UTF-8 text: FastAPI's own answer).

Route-specific answers (409, 429, ...) stay with their routes' ``responses=``, and an
operation's own entry for a code wins.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, status
from pydantic import BaseModel, Field

METHODS = ("get", "put", "post", "delete", "patch")


class Problem(BaseModel):
    """An error answer."""

    detail: str | list[Any] = Field(description="what went wrong: a message or a list of them")


def unprocessable(loc: list[str | int], msg: str) -> HTTPException:
    """A 422 for a check done in the endpoint, shaped like FastAPI's own validation
    answers (``[{"loc", "msg", "type"}]``) so one schema describes every 422."""
    problem = {"loc": loc, "msg": msg, "type": "value_error"}
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [problem])


def _response(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def shared_errors(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The shared error answers that apply to one OpenAPI operation."""
    shared: dict[str, dict[str, Any]] = {}
    if operation.get("security"):
        shared["401"] = _response("missing, unknown or revoked token (WWW-Authenticate: Bearer)")
        shared["403"] = _response("the token lacks the role this endpoint needs")
    path_params = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"]
    if path_params:
        shared["404"] = _response(f"no such resource ({', '.join(path_params)})")
    if "requestBody" in operation:
        shared["400"] = _response("the request body could not be read (not UTF-8 JSON)")
        shared["413"] = _response("the request body is too large")
    return shared


def document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` document the shared error answers of every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
                Problem.model_json_schema()
            )
            for item in schema.get("paths", {}).values():
                for method in METHODS:
                    if operation := item.get(method):
                        responses = operation.setdefault("responses", {})
                        for code, response in shared_errors(operation).items():
                            responses.setdefault(code, response)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
