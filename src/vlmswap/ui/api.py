"""The UI's only way to the gateway: HTTP calls that turn every failure into a message.

Why a wrapper: the pages must show errors as sentences (gateway down -> how to start it;
a 4xx/5xx -> the gateway's own OpenAI-style message), never as tracebacks, and must follow
a switch live from `/api/events`. Everything here is plain httpx; no Streamlit imports,
so it is usable and testable outside the app.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx
from httpx_sse import connect_sse

from vlmswap.ui.view import models

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
GATEWAY_ENV = "VLMSWAP_GATEWAY_URL"
API_KEY_ENV = "VLMSWAP_API_KEY"
START_HINT = "vlmswap serve"


def gateway_url() -> str:
    """The gateway this UI talks to: `vlmswap ui --gateway URL` passes it in the environment."""
    return (os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY).rstrip("/")


class GatewayError(Exception):
    """A failure worth showing to the user as it is: `message` is a sentence, not a traceback."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 log_tail: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.log_tail = log_tail or []


class GatewayUnreachable(GatewayError):
    def __init__(self, url: str, detail: str = ""):
        msg = (f"The gateway at {url} is not reachable{f' ({detail})' if detail else ''}. "
               f"Start it with `{START_HINT}` (or `vlmswap up` for gateway and UI together).")
        super().__init__(msg, code="gateway_unreachable")
        self.url = url


def _error_message(resp: httpx.Response) -> tuple[str, str | None]:
    """The gateway's OpenAI-style `{"error": {"message", "code"}}`, or the raw body."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
        return (text[:300] or f"HTTP {resp.status_code}"), None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or f"HTTP {resp.status_code}"), err.get("code")
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"]), None
    return f"HTTP {resp.status_code}", None


@dataclass
class SwitchResult:
    """How a switch ended: `ok`, the final state, and for a failure the error and log lines."""

    model: str
    ok: bool
    state: str
    elapsed_s: float
    error: str = ""
    log_tail: list[str] = field(default_factory=list)


# (phase, elapsed seconds, message) -> None; called on the caller's thread.
ProgressCallback = Callable[[str, float, str], None]


class Gateway:
    """A short-lived client of one gateway; cheap to create on every Streamlit rerun."""

    def __init__(self, url: str | None = None, timeout: float = 10.0):
        self.url = (url or gateway_url()).rstrip("/")
        self.timeout = timeout

    # --- plumbing ---------------------------------------------------------------------
    def _client(self, timeout: float | httpx.Timeout | None = None) -> httpx.Client:
        # A gateway started with --api-key (VLMSWAP_API_KEY) wants it on every request, the UI's too.
        key = os.environ.get(API_KEY_ENV)
        return httpx.Client(base_url=self.url, timeout=timeout if timeout is not None else self.timeout,
                            headers={"Authorization": f"Bearer {key}"} if key else None, trust_env=False)

    def _request(self, method: str, path: str, *, timeout: float | None = None, **kw: Any) -> httpx.Response:
        try:
            with self._client(timeout) as c:
                resp = c.request(method, path, **kw)
        except httpx.ConnectError as exc:
            raise GatewayUnreachable(self.url, type(exc).__name__) from None
        except httpx.TimeoutException:
            raise GatewayError(f"The gateway at {self.url} did not answer {method} {path} in time.",
                               code="timeout") from None
        except httpx.TransportError as exc:
            raise GatewayUnreachable(self.url, type(exc).__name__) from None
        if resp.status_code >= 400:
            msg, code = _error_message(resp)
            raise GatewayError(msg, status=resp.status_code, code=code)
        return resp

    # --- admin API --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return self._request("GET", "/api/status", timeout=5.0).json()

    def load(self, name: str) -> dict[str, Any]:
        resp = self._request("POST", f"/api/models/{name}/load")
        return resp.json() if resp.content else {}

    def unload(self, name: str) -> dict[str, Any]:
        resp = self._request("POST", f"/api/models/{name}/unload", timeout=120.0)
        return resp.json() if resp.content else {}

    def logs(self, name: str, tail: int = 50) -> list[str]:
        body = self._request("GET", f"/api/models/{name}/logs", params={"tail": tail}).json()
        lines = body.get("lines", body.get("logs", [])) if isinstance(body, dict) else body
        if isinstance(lines, str):
            lines = lines.splitlines()
        return [str(x) for x in lines or []]

    # --- switching, followed live -------------------------------------------------------
    def _events_reader(self, out: "queue.Queue[dict[str, Any] | BaseException]", ready: threading.Event,
                       holder: dict[str, httpx.Client]) -> None:
        """Thread: push every /api/events event into `out` until the follower closes the client."""
        try:
            with self._client(httpx.Timeout(5.0, read=None)) as c:
                holder["client"] = c
                with connect_sse(c, "GET", "/api/events") as src:
                    if src.response.status_code >= 400:
                        raise GatewayError(_error_message(src.response)[0], status=src.response.status_code)
                    ready.set()
                    for sse in src.iter_sse():
                        try:
                            out.put(json.loads(sse.data))
                        except ValueError:
                            continue
        except BaseException as exc:  # reported to the follower; it falls back to /api/status
            out.put(exc)
        finally:
            ready.set()

    def switch(self, name: str, on_progress: ProgressCallback | None = None, timeout: float = 900.0,
               poll_s: float = 0.25) -> SwitchResult:
        """Load `name` (evicting the resident model) and report each phase until ready or failed.

        Events come from /api/events (subscribed *before* the load is asked for, so none is
        missed); /api/status is polled alongside as the source of truth for the end state.
        """
        events: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        ready, holder = threading.Event(), {}
        threading.Thread(target=self._events_reader, args=(events, ready, holder), daemon=True).start()
        ready.wait(5.0)
        t0, wall0 = time.monotonic(), time.time()
        shown = {"elapsed": 0.0}

        def report(phase: str, elapsed: float, message: str) -> None:
            shown["elapsed"] = max(shown["elapsed"], elapsed)  # status and events may cross: never go back
            if on_progress is not None:
                on_progress(phase, shown["elapsed"], message)

        last_phase, last_poll = "", 0.0
        stream_ok = True  # while the event stream lives, phases come from it alone (in order)
        try:
            if self.load(name).get("state") == "ready":
                return self._result(name, t0)
            while time.monotonic() - t0 < timeout:
                try:
                    ev: dict[str, Any] | BaseException | None = events.get(timeout=poll_s)
                except queue.Empty:
                    ev = None
                if isinstance(ev, BaseException):
                    stream_ok = False
                elif ev is not None:
                    phase = str(ev.get("phase") or "")
                    if ev.get("type") == "phase" and phase:
                        last_phase = phase
                        report(phase, float(ev.get("elapsed_s") or 0.0), str(ev.get("message") or ""))
                    if ev.get("model") == name and (phase or ev.get("state")) in ("ready", "failed"):
                        return self._result(name, t0)
                    if not events.empty():
                        continue  # drain what is queued before looking at /api/status
                now = time.monotonic()
                if now - last_poll >= poll_s:
                    last_poll = now
                    st = self.status()
                    sw = st.get("switch")
                    if sw and sw.get("phase") and (not stream_ok or last_phase):
                        # the stream is gone: phases from the status; else only the clock moves on
                        last_phase = sw["phase"] if not stream_ok else last_phase
                        report(last_phase, float(sw.get("elapsed_s") or now - t0), "")
                    if not sw and _settled(find_model(st, name), wall0):
                        return self._result(name, t0, st)
            return SwitchResult(name, False, "timeout", time.monotonic() - t0,
                                error=f"{name} was not ready after {timeout:.0f} s")
        finally:
            client = holder.get("client")
            if client is not None:
                client.close()  # ends the reader thread's stream now, not at the next ping

    def _result(self, name: str, t0: float, st: dict[str, Any] | None = None) -> SwitchResult:
        st = st or self.status()
        model = find_model(st, name) or {}
        state = str(model.get("state") or "unknown")
        elapsed = float(model.get("last_start_s") or time.monotonic() - t0)
        if state == "ready":
            return SwitchResult(name, True, state, elapsed)
        try:
            tail = self.logs(name, 20)
        except GatewayError:
            tail = []
        return SwitchResult(name, False, state, elapsed, error=str(model.get("last_error") or f"{name} is {state}"),
                            log_tail=tail)

    # --- work ------------------------------------------------------------------------
    def ocr(self, filename: str, content: bytes, mime: str, *, model: str, mode: str, page: int,
            dpi: int = 200, timeout: float = 900.0) -> dict[str, Any]:
        """One page of one file through /api/ocr; `page` is 1-based, as in the `pages` field."""
        files = {"file": (filename, content, mime or "application/octet-stream")}
        data = {"model": model, "mode": mode, "pages": str(page), "dpi": str(dpi)}
        return self._request("POST", "/api/ocr", files=files, data=data, timeout=timeout).json()

    def chat_stream(self, model: str, messages: list[dict[str, Any]], *, max_tokens: int = 512,
                    temperature: float = 0.2, timeout: float = 900.0) -> Iterator[str]:
        """Text deltas of a streamed chat completion, as the gateway sends them."""
        body = {"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens,
                "temperature": temperature}
        try:
            with self._client(httpx.Timeout(10.0, read=timeout)) as c, \
                    connect_sse(c, "POST", "/v1/chat/completions", json=body) as src:
                resp = src.response
                if resp.status_code >= 400:
                    resp.read()
                    msg, code = _error_message(resp)
                    raise GatewayError(msg, status=resp.status_code, code=code)
                for sse in src.iter_sse():
                    if sse.data.strip() == "[DONE]":
                        return
                    try:
                        chunk = json.loads(sse.data)
                    except ValueError:
                        continue
                    if "error" in chunk:
                        err = chunk["error"]
                        raise GatewayError(str(err.get("message", err)) if isinstance(err, dict) else str(err))
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            yield text
        except httpx.ConnectError as exc:
            raise GatewayUnreachable(self.url, type(exc).__name__) from None
        except httpx.TimeoutException:
            raise GatewayError(f"The gateway at {self.url} did not answer the chat in time.", code="timeout") from None
        except httpx.TransportError as exc:
            raise GatewayError(f"The connection to the gateway broke: {type(exc).__name__}") from None


def _settled(model: dict[str, Any] | None, since: float) -> bool:
    """Ready, or failed *after* `since` (an earlier failure of the same model does not count)."""
    if not model:
        return False
    return model.get("state") == "ready" or (model.get("state") == "failed" and float(model.get("since") or 0) >= since)


def find_model(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The status entry of a model by registry name, served name or alias."""
    for m in models(status):
        if name in (m.get("name"), m.get("served_name"), *(m.get("aliases") or [])):
            return m
    return None
