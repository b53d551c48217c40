"""`POST /api/ocr` on a real gateway (`vlmswap serve`), the Python client, and `vlmswap ocr --gateway`."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.documents.conftest import DPI, Rendered
from tests.support import PY, free_port, running
from vlmswap.documents.layout import Document
from vlmswap.documents.metrics import cer


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gw")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        [PY, "-m", "vlmswap", "serve", "--port", str(port)],
        f"{url}/health",
        timeout=120,
        env={"VLMSWAP_STATE_DIR": str(tmp / "state")},
        log_path=tmp / "gateway.log",
    ):
        yield url


def post(url: str, files: list[tuple[str, bytes]], timeout: float = 240, **fields: str) -> httpx.Response:
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    return httpx.post(f"{url}/api/ocr", files=parts, data=fields, timeout=timeout, trust_env=False)


def test_client_ocr_returns_the_document(gateway, docs_dir: Path, rendered: Rendered):
    from vlmswap import Client

    doc = Client(gateway).ocr(docs_dir / "report.pdf", model="rapidocr", mode="layout", pages="1,3", dpi=DPI)
    assert isinstance(doc, Document) and [p.number for p in doc.pages] == [1, 3]
    for page, lines in zip(doc.pages, [rendered.texts[0], rendered.texts[2]]):
        assert cer("\n".join(lines), page.text) < 0.02
        assert all(b.bbox is not None and b.category == "Text" for b in page.blocks)
        assert (page.input_width, page.input_height) != (0, 0) and page.model == "rapidocr"


def test_several_files_text_mode_and_markdown(gateway, docs_dir: Path, rendered: Rendered):
    buf = io.BytesIO()
    rendered.images[1].save(buf, "PNG")
    r = post(
        gateway,
        [("report.pdf", (docs_dir / "report.pdf").read_bytes()), ("page2.png", buf.getvalue())],
        mode="text",
        pages="1",
        dpi=str(DPI),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    docs = [Document.from_dict(d) for d in body["documents"]]
    assert [d.source for d in docs] == ["report.pdf", "page2.png"] and body["document"] == body["documents"][0]
    assert all(p.mode == "text" and all(b.bbox is None for b in p.blocks) for d in docs for p in d.pages)
    assert cer("\n".join(rendered.texts[1]), docs[1].pages[0].text) < 0.02
    assert rendered.texts[0][0] in body["markdown"] and rendered.texts[1][0] in body["markdown"]


def test_dots_ocr_client_through_the_gateway_gets_layout_json(gateway, rendered: Rendered):
    from tests import dots_client
    from vlmswap.documents import dots_prompts

    image = rendered.images[0]
    with dots_client.client(gateway + "/v1") as api:
        raw = dots_client.ask(api, "rapidocr", image, dots_prompts.layout_all())
    cells = dots_client.post_process(raw, image.size, image.size)
    assert [c["category"] for c in cells] == ["Text"] * len(rendered.texts[0]), cells
    for cell, line, ink in zip(cells, rendered.texts[0], rendered.boxes[0]):
        assert cer(line, cell["text"]) < 0.03
        assert all(abs(a - b) <= 16 for a, b in zip(cell["bbox"], ink)), (cell["bbox"], ink)


def test_dots_mocr_modes_through_the_ocr_api(gateway, rendered: Rendered):
    buf = io.BytesIO()
    rendered.images[2].save(buf, "PNG")
    png = [("page3.png", buf.getvalue())]
    scene = post(gateway, png, mode="scene-spotting")
    assert scene.status_code == 200, scene.text
    page = Document.from_dict(scene.json()["document"]).pages[0]
    assert page.mode == "scene-spotting" and len(page.blocks) == len(rendered.texts[2])
    svg = post(gateway, png, mode="svg")
    assert svg.status_code == 200, svg.text
    page = Document.from_dict(svg.json()["document"]).pages[0]
    assert [b.category for b in page.blocks] == ["Picture"] and page.blocks[0].text.startswith("<svg")
    assert f'viewBox="0 0 {page.input_width} {page.input_height}"' in page.blocks[0].text
    assert rendered.texts[2][0] in svg.json()["markdown"]  # the SVG is inlined, its text inside
    assert post(gateway, png, mode="poetry").json()["error"]["param"] == "mode"


BAD = {
    "archive.pdf": (415, "unsupported_file"),
    "empty.png": (400, "empty_file"),
    "corrupt.pdf": (400, "corrupt_pdf"),
    "locked.pdf": (400, "encrypted_pdf"),
    "huge.png": (413, "image_too_large"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_file_is_a_4xx_with_an_openai_error(gateway, docs_dir: Path, name):
    status, code = BAD[name]
    r = post(gateway, [(name, (docs_dir / name).read_bytes())])
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["message"].startswith(f"{name}: ") and err["type"] == "invalid_request_error"


def test_bad_fields_and_unknown_model(gateway, docs_dir: Path):
    pdf = [("report.pdf", (docs_dir / "report.pdf").read_bytes())]
    cases = [
        (post(gateway, pdf, pages="2-9"), 400, "page_out_of_range", "outside the document (3 pages)"),
        (post(gateway, pdf, model="no-such-model"), 404, "model_not_found", "no-such-model"),
        (post(gateway, pdf, mode="poetry"), 400, "invalid_mode", "unknown mode"),
        (post(gateway, pdf, dpi="lots"), 400, "invalid_dpi", "dpi must be a number"),
        (post(gateway, pdf, dpi="5000"), 400, "invalid_dpi", "outside 1..1200"),
        (post(gateway, [], model="rapidocr"), 415, "unsupported_media_type", "multipart"),
        (
            httpx.post(f"{gateway}/api/ocr", files={"other": ("x", b"1")}, trust_env=False),
            400,
            "missing_file",
            "no `file`",
        ),
    ]
    for resp, status, code, text in cases:
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        assert err["code"] == code and text in err["message"], err


def test_gateway_keeps_serving_after_bad_requests(gateway, docs_dir: Path):
    post(gateway, [("x.pdf", b"%PDF-1.4 broken")])
    post(gateway, [("y.bin", b"\x00" * 100)])
    assert httpx.get(f"{gateway}/health", trust_env=False).status_code == 200
    buf = io.BytesIO()
    Image.new("RGB", (200, 80), "white").save(buf, "PNG")
    r = post(gateway, [("blank.png", buf.getvalue())])
    assert r.status_code == 200 and r.json()["document"]["pages"][0]["blocks"] == []


def test_cli_through_the_gateway(gateway, docs_dir: Path, rendered: Rendered, tmp_path: Path):
    env = {**os.environ, "VLMSWAP_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.run(
        [
            PY,
            "-m",
            "vlmswap",
            "ocr",
            str(docs_dir / "report.pdf"),
            "--gateway",
            gateway,
            "--pages",
            "2",
            "--dpi",
            str(DPI),
            "--out",
            str(tmp_path / "o"),
            "--format",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    doc = Document.from_dict(json.loads((tmp_path / "o" / "report.json").read_text()))
    assert [p.number for p in doc.pages] == [2]
    assert cer("\n".join(rendered.texts[1]), doc.pages[0].text) < 0.02
    assert not (tmp_path / "state").exists()  # no in-process manager was started
    bad = subprocess.run(
        [PY, "-m", "vlmswap", "ocr", str(docs_dir / "report.pdf"), "--gateway", gateway, "--model", "nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "`nope` does not exist" in bad.stderr
