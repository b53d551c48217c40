"""`vlmswap.Client`: the gateway's admin API, chat and OCR over HTTP.

The seed's manager calls (status, active model, switch, unload), done against a running
gateway instead of in-process, so a notebook, the CLI and the UI all see the same state.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import connect_sse

from vlmswap.client.http import (
    Connection,
    GatewayError,
    GatewayUnreachable,
    SwitchError,
    json_object,
    raise_for,
)
from vlmswap.client.jobs import DocumentJob
from vlmswap.swap.states import ModelState, Phase

if TYPE_CHECKING:
    from PIL import Image

    from vlmswap.documents.layout import Document


def image_data_url(image: str | os.PathLike[str] | bytes | Image.Image) -> str:
    """Any image as a base64 PNG data URL (what the models' chat templates expect)."""
    from PIL import Image as PILImage

    if isinstance(image, (str, os.PathLike)):
        img: PILImage.Image = PILImage.open(image)
    elif isinstance(image, bytes):
        img = PILImage.open(io.BytesIO(image))
    else:
        img = image
    if img.mode not in ("RGB", "RGBA", "L"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Client(Connection):
    """A gateway at `url`. Methods raise GatewayError with the gateway's own message,
    GatewayUnreachable when nothing answers there.
    """

    # --- admin -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return json_object(self.request("GET", "/api/status"))

    def me(self) -> dict[str, Any]:
        """The profile this client's key signs in as: `profile`, `admin`, the `models` it may use."""
        return json_object(self.request("GET", "/api/me"))

    def preferences(self) -> dict[str, Any]:
        """The signed-in profile's saved preferences: `chat_model`, `ocr_model`, `ocr_mode`, `dpi`, `pages`,
        `prompt_presets`, `language` (null where none is saved)."""
        return json_object(self.request("GET", "/api/me/preferences"))

    def set_preferences(
        self, prefs: dict[str, Any] | None = None, *, replace: bool = False, **fields: Any
    ) -> dict[str, Any]:
        """Save preferences on the gateway; returns what it stored (model ids as registry names).

        The fields given (in `prefs` or as keywords, e.g. `dpi=200`) change, the others stay as
        saved; `replace=True` stores exactly what is given, the rest back to null. A bad value is
        a GatewayError with the gateway's 400 (`code` "invalid_request" or "invalid_preferences").
        """
        body = {**(prefs or {}), **fields}
        if not replace:
            body = {**self.preferences(), **body}
        return json_object(self.request("PUT", "/api/me/preferences", json=body))

    def usage(self) -> dict[str, Any]:
        """Requests, tokens and GPU seconds per profile (an admin's key sees every profile)."""
        return json_object(self.request("GET", "/api/usage"))

    def active_model(self) -> str | None:
        """The registry name of the model that is resident and ready, or None."""
        resident: str | None = self.status()["resident"]
        return resident

    def models(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = json_object(self.request("GET", "/v1/models"))["data"]
        return data

    def load(self, name: str, wait: bool = False) -> dict[str, Any]:
        return json_object(self.request("POST", f"/api/models/{name}/load", params={"wait": "true"} if wait else None))

    @contextlib.contextmanager
    def _events(self) -> Iterator[Iterator[dict[str, Any]]]:
        """/api/events, subscribed before the caller asks for anything (so no event is missed), as
        an iterator of event dicts; a broken stream becomes GatewayError / GatewayUnreachable."""
        with self.stream_client(httpx.Timeout(60.0, connect=10.0)) as c:
            try:
                with connect_sse(c, "GET", "/api/events") as src:
                    if src.response.status_code >= 400:
                        src.response.read()
                        raise_for(src.response)
                    yield (json.loads(sse.data) for sse in src.iter_sse() if sse.data)
            except httpx.ConnectError as exc:
                raise GatewayUnreachable(self.url, type(exc).__name__) from None
            except httpx.TransportError as exc:
                raise GatewayError(
                    f"lost the event stream of {self.url} ({type(exc).__name__})", code="gateway_unreachable"
                ) from None

    def switch(
        self, name: str, on_progress: Callable[[dict[str, Any]], None] | None = None, timeout: float = 900.0
    ) -> dict[str, Any]:
        """Make `name` resident and return the status once it is ready; SwitchError when it fails.

        Subscribes to /api/events before asking for the load, so no phase is missed;
        `on_progress` gets every event of that model (dicts as /api/events sends them).
        """
        deadline = time.monotonic() + timeout
        with self._events() as events:
            started = self.load(name)
            real = started["name"]
            if started["state"] == ModelState.READY:
                st = self.status()
                # policy fit: several awake (`awake`); a cluster: one resident per replica (`residents`)
                if real in (st.get("residents") or st.get("awake") or [st.get("resident")]):
                    return st
            for ev in events:
                if time.monotonic() > deadline:
                    raise GatewayError(f"{name} was not ready after {timeout:.0f} s", code="timeout")
                if ev.get("model") != real:
                    continue
                if on_progress is not None:
                    on_progress(ev)
                if ev.get("type") == "phase" and ev.get("phase") == Phase.READY:
                    return self.status()
                if ev.get("phase") == Phase.FAILED or ev.get("state") == ModelState.FAILED:
                    tail = ev.get("log_tail") or self.logs(real, 20)
                    raise SwitchError(str(ev.get("message") or f"{real} failed"), tail)
        raise GatewayError("the gateway closed the event stream", code="events_closed")

    def pull(
        self,
        name: str,
        wait: bool = True,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
        timeout: float = 24 * 3600.0,
    ) -> dict[str, Any]:
        """Have the gateway download `name`'s files into its Hugging Face cache.

        Without `wait`, returns at once with the pull's state (`pulling`, `total_bytes`, ...).
        With it, follows the `pull` events of /api/events (subscribed before the pull is asked
        for), passing each to `on_progress`, and returns the last one; GatewayError when the
        pull fails (409 when one of the same files is already under way).
        """
        if not wait:
            return json_object(self.request("POST", f"/api/models/{name}/pull"))
        deadline = time.monotonic() + timeout
        with self._events() as events:
            real = self.request("POST", f"/api/models/{name}/pull").json()["model"]
            for ev in events:
                if time.monotonic() > deadline:
                    raise GatewayError(f"the pull of {name} did not finish in {timeout:.0f} s", code="timeout")
                if ev.get("type") != "pull" or ev.get("model") != real:
                    continue
                if on_progress is not None:
                    on_progress(ev)
                if ev.get("done"):
                    if not ev.get("ok"):
                        raise GatewayError(str(ev.get("message") or f"the pull of {real} failed"), code="pull_failed")
                    return ev
        raise GatewayError("the gateway closed the event stream", code="events_closed")

    def pull_status(self, name: str) -> dict[str, Any]:
        """The gateway's latest pull of `name` (`pulling`, `downloaded_bytes`, `total_bytes`, `ok`, ...)."""
        return json_object(self.request("GET", f"/api/models/{name}/pull"))

    def unload(self, name: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Stop the awake model and every sleeper, or only `name` if given (after its requests in flight)."""
        path = f"/api/models/{name}/unload" if name else "/api/unload"
        resp = self.request("POST", path, **({"timeout": timeout} if timeout is not None else {}))
        return resp.json() if resp.content else {}

    def sleep(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        """Put the awake model `name` to sleep (after its requests in flight); the next request wakes it."""
        extra = {"timeout": timeout} if timeout is not None else {}
        resp = self.request("POST", f"/api/models/{name}/sleep", **extra)
        return resp.json() if resp.content else {}

    def logs(self, name: str, tail: int = 100) -> list[str]:
        return [str(x) for x in self.request("GET", f"/api/models/{name}/logs", params={"tail": tail}).json()["lines"]]

    # --- work ------------------------------------------------------------------------------

    def chat(self, model: str, messages: list[dict[str, Any]], **kw: Any) -> str:
        """One chat completion (not streamed); returns the answer text."""
        body = {"model": model, "messages": messages, **kw, "stream": False}
        data = self.request("POST", "/v1/chat/completions", json=body).json()
        return data["choices"][0]["message"]["content"] or ""

    def chat_stream(
        self, model: str, messages: list[dict[str, Any]], timeout: float | None = None, **kw: Any
    ) -> Iterator[str]:
        """A streamed chat completion: its text deltas as the gateway sends them.

        `timeout` bounds the wait for each chunk (default: the client's); an error the
        gateway reports mid-stream raises GatewayError.
        """
        body = {"model": model, "messages": messages, **kw, "stream": True}
        read = timeout if timeout is not None else self.timeout
        try:
            with (
                self.stream_client(httpx.Timeout(10.0, read=read)) as c,
                connect_sse(c, "POST", "/v1/chat/completions", json=body) as src,
            ):
                if src.response.status_code >= 400:
                    src.response.read()
                    raise_for(src.response)
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

    def process_image(
        self, image: str | os.PathLike[str] | bytes | Image.Image, prompt: str, model: str, max_tokens: int = 4096
    ) -> str:
        """The seed's call: one image and a prompt, sampled as dots.ocr expects (0.1 / 0.9)."""
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": image_data_url(image)}},
                    {"type": "text", "text": prompt},
                ],
            }
        ]
        return self.chat(model, messages, max_tokens=max_tokens, temperature=0.1, top_p=0.9)

    def ocr(
        self, path: str | os.PathLike[str], model: str | None = None, mode: str | None = None, **fields: Any
    ) -> Document:
        """A file (image or PDF) through the gateway's document pipeline (/api/ocr)."""
        from vlmswap.documents.layout import Document

        p = Path(path)
        return Document.from_dict(self.ocr_upload(p.name, p.read_bytes(), model=model, mode=mode, **fields)["document"])

    def ocr_upload(
        self,
        filename: str,
        content: bytes,
        mime: str | None = None,
        *,
        model: str | None = None,
        mode: str | None = None,
        timeout: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """File bytes (an upload, not a path) through /api/ocr; returns the whole JSON answer
        (`document`, `markdown`, ...). `fields` are the form fields, e.g. `pages="2"`, `dpi=200`."""
        data = {k: str(v) for k, v in {"model": model, "mode": mode, **fields}.items() if v is not None}
        files = {"file": (filename, content, mime) if mime else (filename, content)}  # no mime: httpx guesses
        extra = {"timeout": timeout} if timeout is not None else {}
        return json_object(self.request("POST", "/api/ocr", files=files, data=data, **extra))

    # --- document jobs (/api/jobs) ---------------------------------------------------------

    def submit_job(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        content: bytes | None = None,
        filename: str | None = None,
        model: str | None = None,
        mode: str | None = None,
        **fields: Any,
    ) -> DocumentJob:
        """Submit one document as a job (a path, or `content` with a `filename`); returns at once.

        `fields` are the form fields: `pages="1-3,7"`, `dpi=200`, `prompt=...`, `max_tokens=...`.
        The gateway checks the file before it accepts it (GatewayError with its 4xx otherwise).
        Then `job.wait()`, `job.events()`, `job.result()`, `job.cancel()`.
        """
        if content is None:
            if path is None:
                raise ValueError("submit_job needs a path or content=")
            p = Path(path)
            content, filename = p.read_bytes(), filename or p.name
        data = {k: str(v) for k, v in {"model": model, "mode": mode, **fields}.items() if v is not None}
        body = self.request("POST", "/api/jobs", files={"file": (filename or "upload", content)}, data=data).json()
        return DocumentJob(self, body["id"], body)

    def job(self, job_id: str) -> DocumentJob:
        """A job by id (404 GatewayError when the gateway does not know it)."""
        job = DocumentJob(self, job_id)
        job.refresh()
        return job

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The gateway's recent document jobs, newest first (summaries, no pages)."""
        data: list[dict[str, Any]] = json_object(self.request("GET", "/api/jobs", params={"limit": limit}))["data"]
        return data
