"""Each app's OpenAPI document lists every route the app serves, and is served where it says."""

from __future__ import annotations

from pathlib import Path

import httpx
from openapi_spec_validator import validate

from tests.contract.conftest import (
    PROXIED_PATHS,
    documented_operations,
    gateway_fastapi,
    served_operations,
    worker_fastapi,
)
from tests.gateway.conftest import rapidocr_model, start_gateway


def test_gateway_document_lists_every_route_it_serves_including_the_proxied_openai_routes(tmp_path: Path):
    app = gateway_fastapi(tmp_path)
    doc = app.openapi()
    served = served_operations(app, PROXIED_PATHS)
    assert served <= documented_operations(doc), served - documented_operations(doc)
    assert {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/api/ocr"),
        ("GET", "/api/events"),
        ("POST", "/api/models/{name}/load"),
    } <= documented_operations(doc)
    validate(doc)


def test_worker_document_lists_every_route_it_serves():
    app = worker_fastapi()
    doc = app.openapi()
    assert served_operations(app) <= documented_operations(doc)
    assert ("POST", "/v1/chat/completions") in documented_operations(doc)
    validate(doc)


def test_completion_routes_document_bodies_streams_and_error_bodies(tmp_path: Path):
    for doc in (gateway_fastapi(tmp_path).openapi(), worker_fastapi().openapi()):
        for path, request in (
            ("/v1/chat/completions", "ChatCompletionRequest"),
            ("/v1/completions", "CompletionRequest"),
        ):
            op = doc["paths"][path]["post"]
            assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/" + request)
            assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
            for status in ("400", "404", "413", "503"):
                assert op["responses"][status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
        assert "HTTPValidationError" not in doc["components"]["schemas"]  # 400 + ErrorBody, never FastAPI's 422
        assert not any("422" in op["responses"] for item in doc["paths"].values() for op in item.values())


def test_gateway_document_says_which_routes_need_the_key(tmp_path: Path):
    doc = gateway_fastapi(tmp_path, api_key="k").openapi()
    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}
    assert ops[("get", "/health")]["security"] == []
    assert ops[("post", "/v1/chat/completions")]["security"] == [{"bearer": []}]
    assert "401" in ops[("get", "/api/status")]["responses"]
    assert "security" not in gateway_fastapi(tmp_path).openapi()["paths"]["/api/status"]["get"]


def test_gateway_serves_document_and_docs_behind_the_api_key(tmp_path: Path):
    with start_gateway(tmp_path, {"rapidocr": rapidocr_model()}, api_key="sekrit") as gw:
        for path in ("/openapi.json", "/docs"):
            r = httpx.get(gw.url + path, trust_env=False, timeout=30)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = gw.get("/openapi.json")
        assert r.status_code == 200 and "/v1/chat/completions" in r.json()["paths"]
        r = gw.get("/docs")
        assert r.status_code == 200 and "swagger" in r.text.lower() and "/openapi.json" in r.text
