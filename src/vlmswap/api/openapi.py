"""The OpenAPI documents of the gateway and the worker, true to what they answer.

FastAPI generates each document from the routes; two facts it cannot see are added here:
request bodies that routes read by hand (described by `$ref`s into the components, so the
models are put there), and errors: `errors.install_handlers` answers every validation failure
with a 400 OpenAI error body, never FastAPI's 422, so the document says 400 and ErrorBody.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from vlmswap.api.errors import ErrorBody

REF = "#/components/schemas/{model}"
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def error_responses(table: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` entries: each status an ErrorBody, with why it is answered."""
    return {status: {"model": ErrorBody, "description": why} for status, why in sorted(table.items())}


def _errors_as_400(doc: dict[str, Any]) -> None:
    for item in doc.get("paths", {}).values():
        for op in item.values():
            responses = op.get("responses", {})
            if "422" in responses:
                del responses["422"]
                responses.setdefault(
                    "400",
                    {
                        "description": "Invalid request: an OpenAI error body",
                        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
                    },
                )


def _bearer(doc: dict[str, Any], open_paths: frozenset[str]) -> None:
    doc["components"].setdefault("securitySchemes", {})["bearer"] = {"type": "http", "scheme": "bearer"}
    for path, item in doc.get("paths", {}).items():
        for op in item.values():
            if path in open_paths:
                op["security"] = []
                continue
            op["security"] = [{"bearer": []}]
            op.setdefault("responses", {}).setdefault(
                "401",
                {
                    "description": "missing or wrong API key",
                    "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
                },
            )


def install(
    app: Any, body_models: tuple[type[BaseModel], ...] = (), *, bearer_except: frozenset[str] | None = None
) -> None:
    """Make `app.openapi()` (and so /openapi.json) describe `body_models` and the 400s truly.

    `bearer_except`: an API key is required on every path but these (the gateway's guard).
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()
            models: list[type[BaseModel]] = [ErrorBody, *body_models]
            _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for name in _FASTAPI_422:
                schemas.pop(name, None)
            for name, schema in top.get("$defs", {}).items():
                schemas.setdefault(name, schema)
            _errors_as_400(doc)
            if bearer_except is not None:
                _bearer(doc, bearer_except)
        return app.openapi_schema  # type: ignore[no-any-return]

    app.openapi = openapi


__all__ = ["REF", "error_responses", "install"]
