"""vLLM's sleep-mode endpoints: a sleeping worker refuses work with 503 and answers after wake_up."""

from __future__ import annotations

from tests.worker.conftest import Worker, chat_body


def test_sleep_then_wake_round_trip(rapidocr_worker: Worker, small_image_url: str) -> None:
    with rapidocr_worker.client() as c:
        assert c.get("/is_sleeping").json() == {"is_sleeping": False}
        try:
            assert c.post("/sleep", params={"level": 1}).status_code == 200
            assert c.get("/is_sleeping").json() == {"is_sleeping": True}
            assert c.get("/health").status_code == 200  # as vLLM: alive while asleep
            r = c.post("/v1/chat/completions", json=chat_body(small_image_url, "read"))
            assert r.status_code == 503
            assert "sleeping" in r.json()["error"]["message"]
            assert c.post("/sleep", params={"level": 1}).status_code == 200  # idempotent
        finally:
            assert c.post("/wake_up").status_code == 200
        assert c.get("/is_sleeping").json() == {"is_sleeping": False}
        r = c.post("/v1/chat/completions", json=chat_body(small_image_url, "read"))
        assert r.status_code == 200 and "serving" in r.json()["choices"][0]["message"]["content"]


def test_sleep_level_out_of_range_is_400(rapidocr_worker: Worker) -> None:
    with rapidocr_worker.client() as c:
        r = c.post("/sleep", params={"level": 3})
        assert r.status_code == 400 and "level" in r.json()["error"]["message"]
        assert c.get("/is_sleeping").json() == {"is_sleeping": False}
