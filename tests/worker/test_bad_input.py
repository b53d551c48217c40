"""Bad input gets a 4xx with an OpenAI error body, and the worker goes on serving."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
from collections.abc import Callable, Iterator

import pytest
from PIL import Image

from tests.worker.conftest import MAX_BODY_MB, Worker, chat_body, png_data_url


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _b64_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _json(body: object) -> bytes:
    return json.dumps(body).encode()


def _image_case(url: str) -> bytes:
    return _json(chat_body(url, "read this"))


def _noise_png() -> bytes:
    return _png(Image.frombytes("L", (400, 400), os.urandom(400 * 400)))


JSON = {"content-type": "application/json"}

CASES: dict[str, tuple[int, Callable[[], bytes | Iterator[bytes]], str]] = {
    # name: (status, body factory, a word the error message must contain)
    "malformed_json": (400, lambda: b'{"model": "rapidocr", "messages": [', "JSON"),
    "body_not_an_object": (400, lambda: b'["rapidocr"]', "object"),
    "json_nested_too_deeply": (400, lambda: b'{"model": "rapidocr", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "JSON"),
    "missing_model": (400, lambda: _json({"messages": [{"role": "user", "content": "hi"}]}), "model"),
    "unknown_model": (404, lambda: _json(chat_body(None, "hi", model="no-such-model")), "rapidocr"),
    "no_messages": (400, lambda: _json({"model": "rapidocr", "messages": []}), "messages"),
    "bad_role": (400, lambda: _json({"model": "rapidocr", "messages": [{"role": "robot", "content": "x"}]}), "role"),
    "unsupported_part": (
        400,
        lambda: _json(
            {
                "model": "rapidocr",
                "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
            }
        ),
        "input_audio",
    ),
    "max_tokens_zero": (400, lambda: _json(chat_body(None, "hi", max_tokens=0)), "max_tokens"),
    "n_two": (400, lambda: _json(chat_body(None, "hi", n=2)), "n"),
    "no_image_for_ocr": (400, lambda: _json(chat_body(None, "read what?")), "image"),
    "not_an_image": (400, lambda: _image_case(_b64_url(b"plain text, not a picture")), "image"),
    "bad_base64": (400, lambda: _image_case("data:image/png;base64,@@@@"), "image"),
    "truncated_png": (400, lambda: _image_case(_b64_url(_noise_png()[:60_000])), "truncated"),
    "decompression_bomb_20000x20000": (
        400,
        lambda: _image_case(_b64_url(_png(Image.new("1", (20000, 20000))))),
        "pixel",
    ),
    "over_pixel_cap_7000x7000": (400, lambda: _image_case(_b64_url(_png(Image.new("1", (7000, 7000))))), "cap"),
    "images_over_total_pixel_cap": (
        400,
        lambda: _json(
            {
                "model": "rapidocr",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": _b64_url(_png(Image.new("1", (7000, 5000))))}}
                        ]
                        * 3,
                    }
                ],
            }
        ),
        "together",
    ),
    "http_image_url": (400, lambda: _image_case("http://example.invalid/page.png"), "never fetched"),
    "file_image_url": (400, lambda: _image_case("file:///etc/passwd"), "never fetched"),
    "body_over_cap_by_length": (413, lambda: b" " * (MAX_BODY_MB * 1024 * 1024 + 10) + b"{}", "limit"),
    "body_over_cap_chunked": (413, lambda: (b" " * 65536 for _ in range(MAX_BODY_MB * 16 + 2)), "limit"),
}


def assert_openai_error(r, status: int, word: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert isinstance(err["message"], str) and word.lower() in err["message"].lower(), err
    assert isinstance(err["type"], str) and "param" in err and "code" in err


def assert_still_serving(worker: Worker, small_image_url: str) -> None:
    with worker.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(small_image_url, "read"))
    assert r.status_code == 200, r.text
    assert "serving" in r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_gets_openai_error_and_worker_keeps_serving(
    rapidocr_worker: Worker, small_image_url: str, name: str
) -> None:
    status, make_body, word = CASES[name]
    body = make_body()
    with rapidocr_worker.client() as c:
        r = c.post("/v1/chat/completions", content=body, headers=JSON)
        if name == "body_over_cap_chunked":
            assert "content-length" not in {k.lower() for k in r.request.headers}
    assert_openai_error(r, status, word)
    assert_still_serving(rapidocr_worker, small_image_url)


def test_image_url_is_never_fetched(rapidocr_worker: Worker, small_image_url: str) -> None:
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(1)
        trap.settimeout(0.3)
        url = f"http://127.0.0.1:{trap.getsockname()[1]}/page.png"
        with rapidocr_worker.client() as c:
            r = c.post("/v1/chat/completions", json=chat_body(url, "read"))
        assert_openai_error(r, 400, "never fetched")
        with pytest.raises(socket.timeout):
            trap.accept()  # nobody ever connected
    assert_still_serving(rapidocr_worker, small_image_url)


def test_several_images_are_accepted_and_the_last_is_read(rapidocr_worker: Worker, small_image_url: str) -> None:
    blank = png_data_url(Image.new("RGB", (64, 64), "white"))
    body = chat_body(blank, "read")
    body["messages"][0]["content"].insert(1, {"type": "image_url", "image_url": {"url": small_image_url}})
    with rapidocr_worker.client() as c:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and "serving" in r.json()["choices"][0]["message"]["content"]
