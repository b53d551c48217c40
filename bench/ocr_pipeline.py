"""Benchmark: the document pipeline (`vlmswap ocr`) against rapidocr called directly and Tesseract 5.

Rendered A4 pages at 150 dpi (1240x1754, DejaVuSans 11 pt, different text on each page) are read
  - by `vlmswap ocr pages.pdf` as users run it: a subprocess, the in-process manager, the
    embedded rapidocr worker; PDF rendering, smart_resize, the chat request, parsing, mapping
    and the JSON output are all in. Reported twice: the whole command (engine start included)
    and steady state (pages 2..N, each page's own `timings.total_s`; page 1 waits for the engine start);
  - by RapidOCR called directly in this process on the page image (the floor: no PDF, no HTTP);
  - by Tesseract 5 (`tesseract page.png - --dpi 150`, one process per page, as its CLI is used).
The methods are interleaved run by run so load from other processes hits them alike. CER is
per page against the rendered text (whitespace runs collapsed); all numbers are medians.

Run: .venv/bin/python bench/ocr_pipeline.py [--pages 4] [--runs 3] [--write]
(--write replaces the `## Document pipeline` section of bench/README.md with the results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from vlmswap.documents.metrics import cer  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
DPI = 150
WORDS = [
    "model",
    "gateway",
    "switch",
    "memory",
    "page",
    "layout",
    "text",
    "box",
    "engine",
    "request",
    "queue",
    "answer",
    "image",
    "document",
    "reading",
    "order",
    "table",
    "figure",
    "caption",
    "formula",
    "header",
    "footer",
    "result",
    "invoice",
    "total",
    "amount",
    "due",
    "date",
    "number",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "pack",
    "my",
    "box",
    "with",
    "five",
    "dozen",
    "liquor",
    "jugs",
]


def page_text(seed: int, lines: int = 40) -> list[str]:
    """Deterministic prose-like lines, different per page (no dictionary bias for either engine)."""
    import random

    rng = random.Random(seed)
    words = []
    for i in range(lines * 12):
        w = rng.choice(WORDS)
        if i % 9 == 0:
            w = w.capitalize()
        if i % 23 == 0:
            w = f"{rng.randint(1, 9999)}"
        words.append(w + ("." if i % 13 == 12 else ","[: i % 17 == 16]))
    return textwrap.wrap(" ".join(words), width=80)[:lines]


def render_page(lines: list[str]) -> Image.Image:
    w, h, margin, size = 1240, 1754, 118, 23  # A4 at 150 dpi, 11 pt
    font = ImageFont.truetype(FONT, size)
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((margin, margin + i * int(size * 1.55)), line, font=font, fill="black")
    return im


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    tess = (
        subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if shutil.which("tesseract")
        else "tesseract missing"
    )
    from importlib.metadata import version

    return (
        f"{cpu}, {os.cpu_count()} cores visible, Python {platform.python_version()}, "
        f"rapidocr {version('rapidocr')}, onnxruntime {version('onnxruntime')}, {tess}, load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )


def children_cpu() -> float:
    """CPU seconds of reaped descendants: the CLI and, reaped by its manager, its worker; tesseract."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_cli(pdf: Path, out: Path) -> tuple[float, float, list[float], list[str]]:
    """Wall and CPU seconds of the whole command, each page's own seconds, each page's text."""
    env = {**os.environ, "VLMSWAP_STATE_DIR": str(out / "state")}
    c0 = children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "vlmswap", "ocr", str(pdf), "--dpi", str(DPI), "--out", str(out), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.perf_counter() - t0
    cpu = children_cpu() - c0
    if proc.returncode != 0:
        raise SystemExit(f"vlmswap ocr failed:\n{proc.stderr}")
    doc = json.loads((out / f"{pdf.stem}.json").read_text())
    pages = doc["pages"]
    return (
        wall,
        cpu,
        [p["timings"]["total_s"] for p in pages],
        ["\n".join(b["text"] for b in p["blocks"]) for p in pages],
    )


def run_direct(ocr, images: list[Image.Image]) -> tuple[float, float, list[str]]:
    texts = []
    c0, t0 = time.process_time(), time.perf_counter()
    for im in images:
        result = ocr(np.ascontiguousarray(np.asarray(im)[:, :, ::-1]))
        texts.append("\n".join(result.txts or ()))
    return time.perf_counter() - t0, time.process_time() - c0, texts


def run_tesseract(pngs: list[Path]) -> tuple[float, float, list[str]]:
    texts = []
    c0, t0 = children_cpu(), time.perf_counter()
    for png in pngs:
        proc = subprocess.run(
            ["tesseract", str(png), "-", "--dpi", str(DPI)], capture_output=True, text=True, timeout=600
        )
        texts.append(proc.stdout)
    return time.perf_counter() - t0, children_cpu() - c0, texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=4, help="at least 2 (page 1 includes the engine start)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update the section in bench/README.md")
    args = ap.parse_args()

    from rapidocr import RapidOCR

    about = machine()
    refs = [page_text(seed) for seed in range(args.pages)]
    images = [render_page(lines) for lines in refs]
    ref_texts = ["\n".join(lines) for lines in refs]
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        pdf = tmp / "pages.pdf"
        images[0].save(pdf, "PDF", save_all=True, append_images=[im.copy() for im in images[1:]], resolution=DPI)
        pngs = []
        for i, im in enumerate(images):
            pngs.append(tmp / f"page{i + 1}.png")
            im.save(pngs[-1])
        ocr = RapidOCR(params={"Global.use_cls": False, "Global.log_level": "error"})
        run_direct(ocr, images[:1])  # sessions created before timing
        rows: dict[str, dict[str, list[float]]] = {
            k: {"pps": [], "cer": [], "cpu": []} for k in ("cli_wall", "cli_steady", "direct", "tesseract")
        }
        for r in range(args.runs):
            wall, cpu, per_page, texts = run_cli(pdf, tmp / f"out{r}")
            rows["cli_wall"]["pps"].append(args.pages / wall)
            rows["cli_wall"]["cpu"].append(cpu / args.pages)
            # page 1 waits for the engine to start (its lease waits for the switch): steady state is pages 2..N
            rows["cli_steady"]["pps"].append((args.pages - 1) / sum(per_page[1:]))
            rows["cli_wall"]["cer"] += [cer(a, b) for a, b in zip(ref_texts, texts)]
            secs, cpu, texts = run_direct(ocr, images)
            rows["direct"]["pps"].append(args.pages / secs)
            rows["direct"]["cpu"].append(cpu / args.pages)
            rows["direct"]["cer"] += [cer(a, b) for a, b in zip(ref_texts, texts)]
            secs, cpu, texts = run_tesseract(pngs)
            rows["tesseract"]["pps"].append(args.pages / secs)
            rows["tesseract"]["cpu"].append(cpu / args.pages)
            rows["tesseract"]["cer"] += [cer(a, b) for a, b in zip(ref_texts, texts)]
            print(
                f"run {r + 1}/{args.runs}: " + ", ".join(f"{k} {v['pps'][-1]:.3f} pages/s" for k, v in rows.items()),
                file=sys.stderr,
            )
    rows["cli_steady"]["cer"] = rows["cli_wall"]["cer"]
    names = {
        "cli_wall": "`vlmswap ocr pages.pdf`, whole command (process + engine start included)",
        "cli_steady": "`vlmswap ocr`, steady state (pages 2..N, each page's own time: render, resize, request, parse)",
        "direct": "RapidOCR called directly, in process, on the page image",
        "tesseract": "Tesseract 5 CLI, one process per page",
    }
    lines = [
        "## Document pipeline",
        "",
        f"`bench/ocr_pipeline.py --pages {args.pages} --runs {args.runs}`: {args.pages} rendered A4 pages at "
        f"{DPI} dpi (about 40 lines of 11 pt text each), {args.runs} interleaved runs; medians.",
        f"Machine: {about}.",
        "",
        "| reader | pages/s (median) | wall s/page | CPU s/page | CER (median over pages) | CER (worst page) |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in names.items():
        pps = statistics.median(rows[key]["pps"])
        cpu = f"{statistics.median(rows[key]['cpu']):.1f}" if rows[key]["cpu"] else "-"
        lines.append(
            f"| {label} | {pps:.3f} | {1 / pps:.1f} | {cpu} | "
            f"{100 * statistics.median(rows[key]['cer']):.2f} % | {100 * max(rows[key]['cer']):.2f} % |"
        )
    lines += [
        "",
        f"Load average at the end: {os.getloadavg()[0]:.1f} (the machine is shared; the methods are "
        "interleaved so they see the same load).",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        from _gateway_common import write_section

        write_section("Document pipeline", section)


if __name__ == "__main__":
    main()
