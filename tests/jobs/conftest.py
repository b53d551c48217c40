"""Document jobs on a real `vlmswap serve` with real rapidocr workers (and fault servers)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.documents.conftest import docs_dir, pdf_bytes, render_pages, rendered  # noqa: F401  (fixtures)
from tests.gateway_e2e.conftest import fault_model, gateways  # noqa: F401  (the fixture)
from tests.support import PY, worker_cmd

DPI = 100


def rapidocr_model(**fields: Any) -> dict[str, Any]:
    """The embedded engine as a real worker process, as the shipped registry runs it."""
    return {
        "cmd": worker_cmd("rapidocr", python=PY),
        "family": "rapidocr",
        "capabilities": ["ocr", "layout"],
        "startup_timeout_s": 120,
        **fields,
    }


def page_texts(n: int) -> list[list[str]]:
    """`n` pages, each with lines that name the page (so a result's page can be checked)."""
    return [
        [f"Page {i} of the job test.", f"The quick brown fox number {i}.", "Pack my box with five dozen jugs."]
        for i in range(1, n + 1)
    ]


@pytest.fixture(scope="session")
def pdf6() -> bytes:
    return pdf_bytes(render_pages(page_texts(6)).images, dpi=DPI)


@pytest.fixture(scope="session")
def pdf3() -> bytes:
    return pdf_bytes(render_pages(page_texts(3)).images, dpi=DPI)


def submit(gw: Any, data: bytes, name: str = "doc.pdf", **fields: Any) -> Any:
    return gw.http.post(
        "/api/jobs",
        files={"file": (name, data, "application/pdf")},
        data={"dpi": str(DPI), **{k: str(v) for k, v in fields.items()}},
    )


def job(gw: Any, job_id: str) -> dict[str, Any]:
    r = gw.http.get(f"/api/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_job(gw: Any, job_id: str, cond: Any, timeout: float = 180.0, what: str = "job condition") -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        j = job(gw, job_id)
        if cond(j):
            return j
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout} s: {j}\n{gw.log()[-3000:]}")
        time.sleep(0.1)


__all__ = ["DPI", "fault_model", "job", "rapidocr_model", "submit", "wait_job"]
