"""A document job on a gateway, from Python: follow it, wait for it, fetch its result, cancel it.

`vlmswap.Client.submit_job()` returns a `DocumentJob`. Its events come from
`/api/jobs/{id}/events` (a `snapshot` first, then one per page, then `ended`); when the
connection breaks (the gateway restarted) `wait()` connects again and carries on from the
snapshot, because the job itself survives the gateway.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Literal

import httpx
from httpx_sse import connect_sse

from vlmswap.client.http import Connection, GatewayError, GatewayUnreachable, raise_for

if TYPE_CHECKING:
    from vlmswap.documents.layout import Document, Page

FINISHED = frozenset({"done", "failed", "cancelled"})
RECONNECT_S = 1.0


class DocumentJob:
    """One job by id. `info` is the last state seen (a dict as `GET /api/jobs/{id}` gives)."""

    def __init__(self, client: Connection, job_id: str, info: dict[str, Any] | None = None):
        self.client = client
        self.id = job_id
        self.info: dict[str, Any] = info or {"id": job_id}

    def __repr__(self) -> str:
        return f"DocumentJob({self.id!r}, state={self.state!r})"

    @property
    def state(self) -> str | None:
        return self.info.get("state")

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def refresh(self) -> dict[str, Any]:
        """The job now, pages included."""
        self.info = self.client.request("GET", f"/api/jobs/{self.id}").json()
        return self.info

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """The job's events from now on: a `snapshot`, one per page (`step` "page"), then `ended`.

        One connection; ends after `ended`. `timeout` bounds the wait for each event (pings count).
        """
        read = timeout if timeout is not None else 60.0
        try:
            with (
                self.client.stream_client(httpx.Timeout(10.0, read=read)) as c,
                connect_sse(c, "GET", f"/api/jobs/{self.id}/events") as src,
            ):
                if src.response.status_code >= 400:
                    src.response.read()
                    raise_for(src.response)
                for sse in src.iter_sse():
                    if not sse.data:
                        continue
                    ev = json.loads(sse.data)
                    ev.setdefault("step", sse.event)
                    self._track(ev)
                    yield ev
                    if ev["step"] == "ended":
                        return
        except httpx.ConnectError as exc:
            raise GatewayUnreachable(self.client.url, type(exc).__name__) from None

    def _track(self, ev: dict[str, Any]) -> None:
        if ev.get("step") == "snapshot":
            self.info = {k: v for k, v in ev.items() if k not in ("type", "job_id", "step")}
            return
        for key in ("state", "pages_total", "pages_done", "pages_failed", "eta_s", "error"):
            if key in ev:
                self.info[key] = ev[key]

    def wait(
        self,
        timeout: float | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        reconnect_for: float = 120.0,
    ) -> dict[str, Any]:
        """Block until the job ends; returns it (pages included). `on_event` sees every event.

        A broken connection is retried for up to `reconnect_for` seconds (a gateway restarting
        picks the job up again); GatewayError when the gateway stays away or `timeout` passes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        lost_since: float | None = None
        while True:
            try:
                for ev in self.events():
                    lost_since = None
                    if on_event is not None:
                        on_event(ev)
                    if deadline is not None and time.monotonic() > deadline:
                        raise GatewayError(
                            f"job {self.id} was still {self.state} after {timeout:.0f} s", code="timeout"
                        )
                    if ev["step"] == "ended":
                        return self.refresh()
            except GatewayError as exc:
                if exc.status is not None:  # the gateway answered: an error, not a lost connection
                    raise
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > reconnect_for:
                    raise
            except (httpx.TransportError, httpx.StreamError):
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > reconnect_for:
                    raise GatewayError(
                        f"lost the gateway at {self.client.url} while following job {self.id}",
                        code="gateway_unreachable",
                    ) from None
            if deadline is not None and time.monotonic() > deadline:
                raise GatewayError(f"job {self.id} was still {self.state} after {timeout:.0f} s", code="timeout")
            time.sleep(RECONNECT_S)

    def result(self, format: Literal["json", "md", "zip"] = "json") -> Document | str | bytes:
        """The pages read so far: a Document (json), Markdown text (md) or the ZIP's bytes (zip)."""
        from vlmswap.documents.layout import Document

        resp = self.client.request("GET", f"/api/jobs/{self.id}/result", params={"format": format})
        if format == "json":
            return Document.from_dict(resp.json())
        return resp.text if format == "md" else resp.content

    def page(self, number: int) -> Page:
        from vlmswap.documents.layout import Page

        return Page.from_dict(self.client.request("GET", f"/api/jobs/{self.id}/pages/{number}").json())

    def page_image(self, number: int) -> bytes:
        """The page as the job read it (PNG): the image its boxes refer to."""
        return self.client.request("GET", f"/api/jobs/{self.id}/pages/{number}/image").content

    def cancel(self, purge: bool = False) -> dict[str, Any]:
        """Stop the job (pages done are kept); `purge` also removes it and its files from the gateway."""
        resp = self.client.request("DELETE", f"/api/jobs/{self.id}", params={"purge": "true"} if purge else None)
        body: dict[str, Any] = resp.json()
        self.info.update({k: v for k, v in body.items() if k != "purged"})
        return body


__all__ = ["FINISHED", "DocumentJob"]
