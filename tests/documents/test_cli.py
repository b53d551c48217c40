"""`vlmswap ocr` as users run it: a real subprocess, the in-process manager, the embedded engine.

One run reads a rendered three-page PDF next to five bad files: it must still read the PDF,
say one line per bad file, and exit 2. The outputs of that run are then checked for text
accuracy (CER) and box placement against what the test drew.
"""

from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tests.documents.conftest import DPI, Rendered
from tests.support import PY
from vlmswap.documents.layout import Document
from vlmswap.documents.metrics import cer

BAD = {
    "archive.pdf": "not an image or PDF",
    "empty.png": "file is empty (0 bytes)",
    "corrupt.pdf": "corrupt PDF",
    "locked.pdf": "encrypted PDF (needs a password)",
    "huge.png": "over the cap of 40000000",
}


def run_cli(args: list[str], tmp: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VLMSWAP_STATE_DIR": str(tmp / "state"), "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [PY, "-m", "vlmswap", "ocr", *args], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def cli_run(docs_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cli")
    files = [str(docs_dir / "report.pdf")] + [str(docs_dir / name) for name in BAD]
    proc = run_cli([*files, "--dpi", str(DPI), "--out", str(tmp / "out"), "--format", "json,md,png,zip"], tmp)
    return proc, tmp / "out"


def test_bad_files_get_one_line_each_and_the_good_one_is_still_read(cli_run, docs_dir):
    proc, out = cli_run
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    for name, reason in BAD.items():
        mine = [ln for ln in lines if ln.startswith(f"{docs_dir / name}: ")]
        assert len(mine) == 1 and reason in mine[0], (name, proc.stderr)
    assert (out / "report.json").is_file()
    summary = proc.stderr[proc.stderr.index("files ok") :]
    assert "│ 1 " in summary and "│ 5 " in summary and "│ 3 " in summary  # ok, failed, pages


def test_pdf_becomes_json_markdown_and_annotated_pngs(cli_run, rendered: Rendered):
    _, out = cli_run
    doc = Document.from_dict(json.loads((out / "report.json").read_text()))
    assert [p.number for p in doc.pages] == [1, 2, 3] and doc.model == "rapidocr" and doc.mode == "layout"
    for page, im in zip(doc.pages, rendered.images):
        assert abs(page.width - im.width) <= 1 and abs(page.height - im.height) <= 1
        assert page.input_width % 28 == 0 and page.input_height % 28 == 0
        assert page.timings["model_s"] > 0 and page.flags == []
        per_page = json.loads((out / f"report.page{page.number:04d}.json").read_text())
        assert per_page["blocks"] == [b.to_dict() for b in page.blocks]
        png = Image.open(out / f"report.page{page.number:04d}.png")
        assert png.size == (page.width, page.height)
    md = (out / "report.md").read_text()
    for lines in rendered.texts:
        assert lines[0] in md
    with zipfile.ZipFile(out / "report.zip") as zf:
        names = set(zf.namelist())
    assert {"report.json", "report.md", "report.page0001.png", "report.page0003.json"} <= names


def test_text_is_read_with_under_2_percent_cer(cli_run, rendered: Rendered):
    _, out = cli_run
    doc = Document.from_dict(json.loads((out / "report.json").read_text()))
    for page, lines in zip(doc.pages, rendered.texts):
        rate = cer("\n".join(lines), page.text)
        assert rate < 0.02, (page.number, rate, page.text)


def test_every_block_box_covers_its_line(cli_run, rendered: Rendered):
    _, out = cli_run
    doc = Document.from_dict(json.loads((out / "report.json").read_text()))
    slack = 2.0  # px at 100 dpi: anti-aliasing at the ink's edge
    for page, lines, boxes in zip(doc.pages, rendered.texts, rendered.boxes):
        assert len(page.blocks) == len(lines)
        for line, ink in zip(lines, boxes):
            block = min(page.blocks, key=lambda b: cer(line, b.text))
            x1, y1, x2, y2 = block.bbox
            assert x1 <= ink[0] + slack and y1 <= ink[1] + slack and x2 >= ink[2] - slack and y2 >= ink[3] - slack, (
                line,
                block.bbox,
                ink,
            )
            # and it is the line's box, not the page's
            assert (y2 - y1) < 3 * (ink[3] - ink[1])


def test_annotated_png_shows_boxes_where_the_blocks_are(cli_run):
    _, out = cli_run
    doc = Document.from_dict(json.loads((out / "report.json").read_text()))
    png = Image.open(out / "report.page0001.png").convert("RGB")
    b = doc.pages[0].blocks[0]
    left_edge = png.crop((int(b.bbox[0]), int(b.bbox[1]) + 2, int(b.bbox[0]) + 1, int(b.bbox[3]) - 2))
    assert {c for _, c in left_edge.getcolors(1000)} == {(22, 160, 133)}  # the Text colour


def test_page_range_outside_the_document_fails_that_file_only(docs_dir, tmp_path):
    proc = run_cli([str(docs_dir / "report.pdf"), "--pages", "2-9", "--out", str(tmp_path / "o")], tmp_path, 120)
    assert proc.returncode == 2
    first = proc.stderr.splitlines()[0]
    assert first == f"{docs_dir / 'report.pdf'}: page range '2-9' is outside the document (3 pages)"


def test_unknown_model_is_one_line_and_exit_2(docs_dir, tmp_path):
    proc = run_cli([str(docs_dir / "report.pdf"), "--model", "no-such-model"], tmp_path, 120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unknown model 'no-such-model'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_mode_and_format_are_refused(docs_dir, tmp_path):
    proc = run_cli([str(docs_dir / "report.pdf"), "--mode", "poetry"], tmp_path, 120)
    assert proc.returncode == 2 and "unknown mode 'poetry'" in proc.stderr
    proc = run_cli([str(docs_dir / "report.pdf"), "--format", "json,docx"], tmp_path, 120)
    assert proc.returncode == 2 and "unknown --format docx" in proc.stderr
