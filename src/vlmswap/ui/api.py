"""The UI's way to the gateway: `vlmswap.Client` plus what only the pages need.

`vlmswap.Client` does the HTTP and turns every failure into a sentence (GatewayError, or
GatewayUnreachable naming `vlmswap serve`). On top of it, `Gateway` adds the gateway URL from
the environment, a switch that never raises for a failed start but returns a SwitchResult
with a clock that keeps ticking (events from /api/events, /api/status as fallback and end
state), and one-page OCR of an upload. No Streamlit imports, so it is testable outside the app.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import connect_sse

from vlmswap.client import Client, GatewayError, GatewayUnreachable
from vlmswap.client.http import API_KEY_ENV, START_HINT, raise_for
from vlmswap.swap.states import ModelState, Phase
from vlmswap.ui.view import models

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_GATEWAY",
    "GATEWAY_ENV",
    "START_HINT",
    "Gateway",
    "GatewayError",
    "GatewayUnreachable",
    "ProgressCallback",
    "SwitchResult",
    "find_model",
    "gateway_url",
]

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
GATEWAY_ENV = "VLMSWAP_GATEWAY_URL"


def gateway_url() -> str:
    """The gateway this UI talks to: `vlmswap ui --gateway URL` passes it in the environment."""
    return (os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY).rstrip("/")


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
ProgressCallback = Callable[[str, float, str, "float | None"], None]
"""(phase, seconds since the switch began, message, expected total seconds (learned) or None)."""


def session_gateway() -> Gateway:
    """The browser session's client: one connection pool per session, not one per rerun."""
    import streamlit as st

    gw = st.session_state.get("_vlmswap_gateway")
    if gw is None or gw.url != gateway_url():
        if gw is not None:
            gw.close()
        gw = st.session_state["_vlmswap_gateway"] = Gateway()
    return gw


class Gateway(Client):
    """A `vlmswap.Client` for the pages, with short timeouts (see `session_gateway`)."""

    def __init__(self, url: str | None = None, timeout: float = 10.0, api_key: str | None = None):
        super().__init__(url or gateway_url(), timeout=timeout, api_key=api_key)
        self._me: dict[str, Any] | None = None

    def status(self) -> dict[str, Any]:
        """/api/status as the signed-in profile sees it: only the models it may use, and `profile`."""
        st: dict[str, Any] = self.request("GET", "/api/status", timeout=5.0).json()
        if self._me is None:
            self._me = self.me()
        st["profile"] = self._me["profile"]
        if not self._me["admin"]:
            allowed = set(self._me["models"])
            st["models"] = {k: v for k, v in st["models"].items() if k in allowed}
        return st

    # --- switching, followed live -------------------------------------------------------
    def _events_reader(
        self, out: queue.Queue[dict[str, Any] | BaseException], ready: threading.Event, holder: dict[str, httpx.Client]
    ) -> None:
        """Thread: push every /api/events event into `out` until the follower closes the client."""
        try:
            with self.stream_client(httpx.Timeout(5.0, read=None)) as c:
                holder["client"] = c
                with connect_sse(c, "GET", "/api/events") as src:
                    if src.response.status_code >= 400:
                        src.response.read()
                        raise_for(src.response)
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

    def switch(
        self,
        name: str,
        on_progress: ProgressCallback | None = None,  # type: ignore[override]
        timeout: float = 900.0,
        poll_s: float = 0.25,
    ) -> SwitchResult:
        """Load `name` (evicting the resident model) and report each phase until ready or failed.

        Unlike `Client.switch`, a failed start is a SwitchResult (with its log lines), not an
        exception, and the elapsed time passed to `on_progress` never goes back.

        Events come from /api/events (subscribed *before* the load is asked for, so none is
        missed); /api/status is polled alongside as the source of truth for the end state.
        """
        events: queue.Queue[dict[str, Any] | BaseException] = queue.Queue()
        ready, holder = threading.Event(), {}
        threading.Thread(target=self._events_reader, args=(events, ready, holder), daemon=True).start()
        ready.wait(5.0)
        t0, wall0 = time.monotonic(), time.time()
        shown = {"elapsed": 0.0}

        eta: dict[str, float | None] = {"s": None}

        def report(phase: str, elapsed: float, message: str) -> None:
            shown["elapsed"] = max(shown["elapsed"], elapsed)  # status and events may cross: never go back
            if on_progress is not None:
                on_progress(phase, shown["elapsed"], message, eta["s"])

        last_phase, last_poll = "", 0.0
        stream_ok = True  # while the event stream lives, phases come from it alone (in order)
        try:
            if self.load(name).get("state") == ModelState.READY:
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
                        eta["s"] = ev.get("eta_s") if ev.get("eta_s") is not None else eta["s"]
                        report(phase, float(ev.get("elapsed_s") or 0.0), str(ev.get("message") or ""))
                    if ev.get("model") == name and (phase or ev.get("state")) in (Phase.READY, Phase.FAILED):
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
            return SwitchResult(
                name, False, "timeout", time.monotonic() - t0, error=f"{name} was not ready after {timeout:.0f} s"
            )
        finally:
            client = holder.get("client")
            if client is not None:
                client.close()  # ends the reader thread's stream now, not at the next ping

    def _result(self, name: str, t0: float, st: dict[str, Any] | None = None) -> SwitchResult:
        st = st or self.status()
        model = find_model(st, name) or {}
        state = str(model.get("state") or "unknown")
        elapsed = float(model.get("last_start_s") or time.monotonic() - t0)
        if state == ModelState.READY:
            return SwitchResult(name, True, state, elapsed)
        try:
            tail = self.logs(name, 20)
        except GatewayError:
            tail = []
        return SwitchResult(
            name, False, state, elapsed, error=str(model.get("last_error") or f"{name} is {state}"), log_tail=tail
        )

    # --- work ------------------------------------------------------------------------
    def ocr_page(
        self,
        filename: str,
        content: bytes,
        mime: str,
        *,
        model: str,
        mode: str,
        page: int,
        dpi: int = 200,
        timeout: float = 900.0,
    ) -> dict[str, Any]:
        """One page of one uploaded file through /api/ocr; `page` is 1-based, as in the `pages` field."""
        return self.ocr_upload(filename, content, mime, model=model, mode=mode, pages=page, dpi=dpi, timeout=timeout)

    def unload(self, name: str | None = None, timeout: float | None = 120.0) -> dict[str, Any]:
        """As `Client.unload`, with room for the resident's requests in flight to finish."""
        return super().unload(name, timeout=timeout)


def _settled(model: dict[str, Any] | None, since: float) -> bool:
    """Ready, or failed *after* `since` (an earlier failure of the same model does not count)."""
    if not model:
        return False
    state = model.get("state")
    return state == ModelState.READY or (state == ModelState.FAILED and float(model.get("since") or 0) >= since)


def find_model(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The status entry of a model by registry name, served name or alias."""
    for m in models(status):
        if name in (m.get("name"), m.get("served_name"), *(m.get("aliases") or [])):
            return m
    return None
