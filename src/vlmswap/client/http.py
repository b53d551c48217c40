"""The HTTP side of `vlmswap.Client`: one connection to a gateway, and the errors it raises.

`Client` (the admin API, chat, OCR) and `DocumentJob` (one document job) both speak through a
`Connection`, so neither reaches into the other.
"""

from __future__ import annotations

import os
from typing import Any, Self

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
API_KEY_ENV = "VLMSWAP_API_KEY"
START_HINT = "vlmswap serve"


class GatewayError(Exception):
    """The gateway answered with an error (its OpenAI-style message) or could not be reached.

    `message` is a sentence fit to show a user as it is; `log_tail` holds backend log lines
    where the failure has them.
    """

    def __init__(
        self, message: str, status: int | None = None, code: str | None = None, log_tail: list[str] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.log_tail = log_tail or []


class GatewayUnreachable(GatewayError):
    """No gateway answers at `url` (refused, reset, DNS); the message says how to start one."""

    def __init__(self, url: str, detail: str = ""):
        msg = (
            f"The gateway at {url} is not reachable{f' ({detail})' if detail else ''}. "
            f"Start it with `{START_HINT}` (or `vlmswap up` for gateway and UI together)."
        )
        super().__init__(msg, code="gateway_unreachable")
        self.url = url


class SwitchError(GatewayError):
    """A switch ended in `failed`; `log_tail` holds the backend's last output lines."""

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message, status=502, code="switch_failed", log_tail=log_tail)

    def __str__(self) -> str:
        if not self.log_tail:
            return self.message
        return self.message + "\n--- last log lines ---\n" + "\n".join(self.log_tail)


def error_message(resp: httpx.Response) -> tuple[str, str | None]:
    """The gateway's OpenAI-style `{"error": {"message", "code"}}`, a FastAPI `detail`, or the raw body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:500] or f"HTTP {resp.status_code}", None
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or f"HTTP {resp.status_code}"), err.get("code")
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"]), None
    return resp.text.strip()[:500] or f"HTTP {resp.status_code}", None


def raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    msg, code = error_message(resp)
    raise GatewayError(msg, status=resp.status_code, code=code)


def json_object(resp: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object (every admin route answers one)."""
    body = resp.json()
    if not isinstance(body, dict):
        raise GatewayError(
            f"{resp.request.url}: expected a JSON object, got {type(body).__name__}", status=resp.status_code
        )
    return body


class Connection:
    """A gateway at `url`: one keep-alive client for short calls, a fresh one per long stream.

    Without `api_key`, the key in $VLMSWAP_API_KEY (what `vlmswap serve --api-key` reads) is
    sent, looked up on every request so a long-lived client follows the environment.
    `language` ("ru"), when set, asks for the gateway's error messages in it (Accept-Language);
    their `code` stays the same.
    """

    def __init__(
        self, url: str = DEFAULT_URL, api_key: str | None = None, timeout: float = 600.0, language: str | None = None
    ):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.language = language
        self._http = httpx.Client(base_url=self.url, trust_env=False, timeout=httpx.Timeout(timeout, connect=10.0))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _headers(self) -> dict[str, str]:
        key = self.api_key or os.environ.get(API_KEY_ENV)
        headers = {"authorization": f"Bearer {key}"} if key else {}
        if self.language:
            headers["accept-language"] = self.language
        return headers

    def stream_client(self, timeout: httpx.Timeout) -> httpx.Client:
        """A separate connection for a long stream (events, streamed chat), so short calls never wait on it."""
        return httpx.Client(base_url=self.url, headers=self._headers(), trust_env=False, timeout=timeout)

    def _transport_error(self, exc: httpx.TransportError, what: str) -> GatewayError:
        if isinstance(exc, httpx.TimeoutException):
            return GatewayError(f"The gateway at {self.url} did not answer {what} in time.", code="timeout")
        return GatewayUnreachable(self.url, type(exc).__name__)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One call; `timeout=` overrides the client's for it."""
        try:
            resp = self._http.request(method, path, headers=self._headers(), **kw)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, f"{method} {path}") from None
        raise_for(resp)
        return resp
