"""Schemathesis against both documents, with real processes: a rapidocr worker, and a gateway
in front of one.

Every documented operation is called with generated requests (valid and invalid); each answer
must match the document (status, content type, body schema), and the only 5xx allowed are
the documented 502/503 with an error body. Left out of generation, and why:
- GET /api/events: an endless SSE stream (its framing is tested in tests/gateway).
- POST /api/models/{name}/load, /unload, /api/unload: each valid call stops or starts the
  backend (seconds of process work, and every later request then waits on it); they are
  called with chosen inputs in test_gateway_load_and_unload_answer_as_documented instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.contract.conftest import gateway_fastapi, worker_fastapi
from tests.gateway.conftest import Gateway, rapidocr_model, start_gateway
from tests.support import free_port, running, worker_argv
from tests.worker.conftest import png_data_url, render_page

# Per operation (the two completion routes get twice as many); under a minute for both documents
# on 2 idle cores. The same cases every run; VLMSWAP_FUZZ_EXAMPLES=N explores: N each, random.
EXPLORE = int(os.environ.get("VLMSWAP_FUZZ_EXAMPLES", "0"))
MAX_EXAMPLES = EXPLORE or 10
FUZZ: dict[str, Any] = {
    "deadline": None,
    "derandomize": not EXPLORE,
    "database": None,
    "suppress_health_check": list(HealthCheck),
}
MODEL = "rapidocr"
PAGE = png_data_url(render_page(["Fuzzing reads this line."], min_height=200).image)
NOT_FUZZED = r"^/api/(events|unload|models/\{name\}/(load|unload))$"


@schemathesis.check
def only_documented_server_errors(ctx: Any, response: Any, case: Any) -> None:
    """A 5xx only as a documented 502/503 of this operation, with an OpenAI error body."""
    if response.status_code < 500:
        return
    documented = case.operation.definition.raw.get("responses", {})
    assert response.status_code in (502, 503) and str(response.status_code) in documented, (
        f"{case.operation.label}: {response.status_code} {response.text[:300]}"
    )
    err = json.loads(response.text)["error"]
    assert isinstance(err["message"], str) and err["message"], err


CHECKS: dict[str, Any] = {
    "additional_checks": [only_documented_server_errors],
    "excluded_checks": [
        not_a_server_error,
        # valid by the schema is not always servable: an image
        # URL must hold a decodable image, OCR needs an image
        positive_data_acceptance,
    ],
}


@pytest.fixture(scope="module")
def worker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("fuzz-worker") / "worker.log"
    url = f"http://127.0.0.1:{port}"
    with running(worker_argv("rapidocr", port), url + "/health", log_path=log):
        yield url


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("fuzz-gateway")
    with start_gateway(tmp, {"rapidocr": rapidocr_model()}, "--preload", "rapidocr") as gw:
        gw.wait_for(lambda st: st["resident"] == "rapidocr", timeout=120)
        yield gw


def _operations(doc: dict[str, Any]) -> dict[str, Any]:
    """The document's operations by label, NOT_FUZZED left out.

    Built from the apps in-process at collection (the served documents are the same, checked
    below): schemathesis's own pytest plugin does not run under pytest 9.
    """
    schema = schemathesis.openapi.from_dict(doc)
    ops = (result.ok() for result in schema.get_all_operations())
    return {op.label: op for op in ops if not re.match(NOT_FUZZED, op.path)}


WORKER_OPS = _operations(worker_fastapi().openapi())
with tempfile.TemporaryDirectory(prefix="vlmswap-fuzz-") as _tmp:
    GATEWAY_OPS = _operations(gateway_fastapi(Path(_tmp)).openapi())


def _aim(case: Any, aim: str) -> Any:
    """Point a valid case at what is there: the served model, and for chat a readable page.

    Random model ids and image bytes would stop nearly every request at the first check; aimed
    ones reach the queue, the backend and the engine (answers, streams, stop strings, usage).
    """
    if aim == "as generated":
        return case
    if isinstance(case.body, dict):
        case.body["model"] = MODEL
        if aim == "with a page" and isinstance(case.body.get("messages"), list):
            for message in case.body["messages"]:
                for part in message["content"] if isinstance(message.get("content"), list) else []:
                    if part.get("type") == "image_url":
                        part["image_url"] = {"url": PAGE}
            case.body["messages"].append(
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": PAGE}}, {"type": "text", "text": "read"}],
                }
            )
    if case.path_parameters and "name" in case.path_parameters:
        case.path_parameters["name"] = MODEL
    return case


def fuzz(operation: Any, base_url: str, timeout: float) -> None:
    """Generated valid and invalid requests to `operation`, each answer checked against the document."""
    valid = st.builds(
        _aim,
        operation.as_strategy(GenerationMode.POSITIVE),
        st.sampled_from(["as generated", "known model", "with a page"]),
    )
    cases = st.one_of(valid, operation.as_strategy(GenerationMode.NEGATIVE))
    examples = MAX_EXAMPLES * (2 if operation.path in ("/v1/chat/completions", "/v1/completions") else 1)

    @settings(max_examples=examples, **FUZZ)
    @given(case=cases)
    def run(case: Any) -> None:
        r = case.call_and_validate(base_url=base_url, timeout=timeout, **CHECKS)
        if EXPLORE:
            print("FUZZ", case.operation.label, r.status_code, r.text[:150].replace("\n", " "))

    run()


def test_served_documents_are_the_ones_fuzzed(worker_url: str, gateway: Gateway) -> None:
    assert httpx.get(worker_url + "/openapi.json", trust_env=False).json() == worker_fastapi().openapi()
    served = gateway.get("/openapi.json").json()
    assert served["paths"] == gateway_fastapi(gateway.state_dir.parent / "doc").openapi()["paths"]


@pytest.mark.parametrize("label", sorted(WORKER_OPS))
def test_worker_answers_generated_requests_as_documented(label: str, worker_url: str) -> None:
    httpx.post(worker_url + "/wake_up", trust_env=False).raise_for_status()  # fuzzing /sleep put it to sleep
    fuzz(WORKER_OPS[label], worker_url, timeout=60)


@pytest.mark.parametrize("label", sorted(GATEWAY_OPS))
def test_gateway_answers_generated_requests_as_documented(label: str, gateway: Gateway) -> None:
    fuzz(GATEWAY_OPS[label], gateway.url, timeout=120)


# --- regressions: what fuzzing found, each pinned by name -----------------------------------


def _validator(doc: dict[str, Any], pointer: str) -> Any:
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource("urn:doc", Resource.from_contents(doc, default_specification=DRAFT202012))
    return Draft202012Validator({"$ref": "urn:doc#" + pointer}, registry=registry)


def test_streamed_events_validate_against_the_documented_event_schema(worker_url: str) -> None:
    """The document once described a stream as one string; schemathesis reads SSE event by event."""
    doc = worker_fastapi().openapi()
    event = _validator(doc, "/paths/~1v1~1chat~1completions/post/responses/200/content/text~1event-stream/schema")
    chunk = _validator(doc, "/components/schemas/ChatCompletionChunk")
    body = {
        "model": MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PAGE}}]}],
    }
    with httpx.stream("POST", worker_url + "/v1/chat/completions", json=body, trust_env=False, timeout=120) as r:
        assert r.status_code == 200
        datas = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert datas[-1] == "[DONE]" and len(datas) >= 3
    for data in datas:
        event.validate({"data": data})
    for data in datas[:-1]:
        chunk.validate(json.loads(data))


def test_request_schemas_require_model_as_both_apps_do(worker_url: str, gateway: Gateway) -> None:
    """The document once made `model` optional; both apps answer 400 without it."""
    gateway_doc = gateway_fastapi(gateway.state_dir.parent / "d").openapi()
    for doc, url in ((worker_fastapi().openapi(), worker_url), (gateway_doc, gateway.url)):
        for name, path in (("ChatCompletionRequest", "/v1/chat/completions"), ("CompletionRequest", "/v1/completions")):
            assert "model" in doc["components"]["schemas"][name]["required"]
            r = httpx.post(
                url + path,
                json={"messages": [{"role": "user", "content": "hi"}], "prompt": "hi"},
                trust_env=False,
                timeout=60,
            )
            assert r.status_code == 400 and r.json()["error"]["param"] == "model"


@pytest.mark.parametrize("mode", ["", "OCR"])
def test_ocr_modes_the_gateway_accepts_are_valid_by_its_document(mode: str, gateway: Gateway) -> None:
    """The document once listed `mode` as an enum, while the form takes aliases and an empty field."""
    doc = gateway_fastapi(gateway.state_dir.parent / "d").openapi()
    form = doc["paths"]["/api/ocr"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    _validator({"form": form}, "/form").validate({"file": ["x"], "mode": mode})
    png = base64.b64decode(PAGE.split(",", 1)[1])
    r = httpx.post(
        gateway.url + "/api/ocr",
        files={"file": ("page.png", png, "image/png")},
        data={"mode": mode},
        trust_env=False,
        timeout=120,
    )
    assert r.status_code == 200, r.text


def _documented(doc: dict[str, Any], path: str, method: str, r: httpx.Response) -> None:
    """`r` has a status the document lists for the operation, and a body its schema accepts."""
    responses = doc["paths"][path][method]["responses"]
    assert str(r.status_code) in responses, (path, r.status_code, r.text)
    schema = responses[str(r.status_code)]["content"]["application/json"]["schema"]
    _validator({**doc, "x-here": schema}, "/x-here").validate(r.json())


def test_gateway_load_and_unload_answer_as_documented(gateway: Gateway) -> None:
    """The operations left out of generation (they start and stop the backend), called with chosen inputs."""
    doc = gateway_fastapi(gateway.state_dir.parent / "d").openapi()
    load, unload_one = "/api/models/{name}/load", "/api/models/{name}/unload"
    calls = [
        (load, "/api/models/no-such-model/load", {}),
        (unload_one, "/api/models/no-such-model/unload", {}),
        (load, f"/api/models/{MODEL}/load", {"wait": "true"}),
        (load, f"/api/models/{MODEL}/load", {}),  # already resident: 200
        (unload_one, f"/api/models/{MODEL}/unload", {}),  # 202, unloading
        ("/api/unload", "/api/unload", {}),  # nothing (more) to unload, or 202
        (load, f"/api/models/{MODEL}/load", {}),  # 202: switch requested
        (load, f"/api/models/{MODEL}/load", {"wait": "true"}),
    ]
    statuses = []
    for path, url, params in calls:
        r = gateway.post(url, params=params, timeout=120)
        _documented(doc, path, "post", r)
        statuses.append(r.status_code)
    assert statuses[:3] == [404, 404, 200] and statuses[4] == 202 and statuses[-1] == 200, statuses
