"""Fixtures for the UI tests: a real gateway subprocess over a small registry, rendered pages.

The registry holds two embedded rapidocr models (cheap, real switches between them), the
tiny random-weight Qwen2-VL for chat, a model whose process dies at start with a telling
log line, and a vLLM model that cannot run here.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import PY, free_port, running
from tests.ui.helpers import APP_FILE, PAGE_ONE, PAGE_TWO, png_bytes, registry, render_document, render_page


@dataclass
class GatewayProc:
    url: str
    log: Path

    def status(self) -> dict:
        return httpx.get(f"{self.url}/api/status", timeout=10, trust_env=False).json()

    def resident(self) -> str | None:
        from vlmswap.ui.view import resident_name

        return resident_name(self.status())

    def reset_preferences(self) -> None:
        """No saved preferences (the UI saves what a test picks; the next test starts clean)."""
        httpx.put(f"{self.url}/api/me/preferences", json={}, timeout=10, trust_env=False).raise_for_status()

    def unload_all(self, timeout: float = 60.0) -> None:
        """Unload whatever is resident and wait until every model is stopped (or failed)."""
        from vlmswap.ui.view import models

        httpx.post(f"{self.url}/api/unload", timeout=60, trust_env=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st.get("switch") is None and all(m.get("state") in ("stopped", "failed") for m in models(st)):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the gateway did not unload within {timeout}s: {self.status()}")


@pytest.fixture(scope="session")
def ui_gateway(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[GatewayProc]:
    """One real gateway for the UI tests; each test resets it to 'nothing resident'."""
    d = tmp_path_factory.mktemp("ui-gateway")
    reg = d / "registry.yaml"
    reg.write_text(yaml.safe_dump(registry(tiny_model_dir)))
    port = free_port()
    log = d / "gateway.log"
    argv = [PY, "-m", "vlmswap", "serve", "--config", str(reg), "--port", str(port)]
    # Own state dir (pid files, logs): other gateways on this machine must not see our backends.
    with running(
        argv,
        f"http://127.0.0.1:{port}/api/status",
        timeout=60,
        log_path=log,
        env={"VLMSWAP_STATE_DIR": str(d / "state")},
    ):
        yield GatewayProc(f"http://127.0.0.1:{port}", log)


@pytest.fixture
def gateway(ui_gateway: GatewayProc, monkeypatch: pytest.MonkeyPatch) -> GatewayProc:
    """The gateway with nothing resident and no saved preferences, and the app pointed at it."""
    ui_gateway.unload_all()
    ui_gateway.reset_preferences()
    monkeypatch.setenv("VLMSWAP_GATEWAY_URL", ui_gateway.url)
    return ui_gateway


@pytest.fixture
def app(gateway: GatewayProc):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_FILE), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture(scope="session")
def page_png() -> bytes:
    return png_bytes(render_page(PAGE_ONE))


@pytest.fixture(scope="session")
def document_png() -> bytes:
    return png_bytes(render_document())


@pytest.fixture(scope="session")
def two_page_pdf() -> bytes:
    """A real two-page PDF (Pillow writes it; pypdfium2 renders it back)."""
    a, b = render_page(PAGE_ONE), render_page(PAGE_TWO)
    buf = io.BytesIO()
    a.save(buf, format="PDF", save_all=True, append_images=[b], resolution=150)
    return buf.getvalue()


@pytest.fixture
def ui_server(gateway: GatewayProc, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """`vlmswap ui` as users run it, against the test gateway; `VLMSWAP_LANG` from an indirect
    parameter (default en; "" leaves the language to the browser)."""
    port = free_port()
    argv = [PY, "-m", "vlmswap", "ui", "--gateway", gateway.url, "--port", str(port)]
    with running(
        argv,
        f"http://127.0.0.1:{port}/_stcore/health",
        timeout=90,
        log_path=tmp_path / "ui.log",
        env={"VLMSWAP_STATE_DIR": str(tmp_path / "state"), "VLMSWAP_LANG": getattr(request, "param", "en")},
    ):
        yield f"http://127.0.0.1:{port}"
