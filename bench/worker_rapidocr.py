"""Benchmark: the rapidocr worker against calling RapidOCR in-process, and Tesseract 5.

One A4 page at 150 dpi (1240x1754, several paragraphs of DejaVuSans) is read:
  - directly: RapidOCR in this process on the decoded image (the floor: no HTTP at all);
  - through the worker: a real `vlmswap worker --engine rapidocr` process, one
    /v1/chat/completions request at a time with the page as a PNG data URL;
  - by Tesseract 5 (`tesseract page.png -`, one process per page, as the CLI is used).
The three are interleaved run by run, so load from other processes hits them alike.
Also measured: the worker's start-to-ready time (spawn until GET /health is 200, polled every
50 ms), next to a fresh process that only imports RapidOCR and creates its sessions.

Run: .venv/bin/python bench/worker_rapidocr.py [--runs 5]   (prints a markdown table)
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from vlmswap.documents.metrics import cer  # noqa: E402
from vlmswap.worker.engines.rapidocr_engine import RapidOCREngine, render  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PARAGRAPHS = [
    "Several vision-language models share one small graphics card in this system. Only one of them is "
    "resident at any moment; a request for another model waits while the resident one drains its work, "
    "stops, and hands its memory back before the next one starts.",
    "The embedded engine needs no graphics card at all. It reads printed pages with a compact detector and "
    "recognizer that ship inside the Python wheel, so a fresh machine can answer its first document request "
    "without downloading anything.",
    "Reading order matters for every downstream step. Lines are grouped by their vertical overlap, sorted "
    "from top to bottom and then from left to right, and returned either as plain text or as a list of "
    "boxes with their text, in the pixels of the image that was received.",
    "Bad input must never stop the service. A truncated picture, an enormous image, a body over the size "
    "limit or a link to a remote file each receive a clear error, and the next request is served as if "
    "nothing had happened.",
    "Invoice 2025-0147 lists 12 items for a total of 1,234.56 euros, due on 30 April 2025. Payment by bank "
    "transfer within thirty days is requested; questions go to the accounts office.",
]


def render_a4() -> tuple[Image.Image, str]:
    """A4 at 150 dpi, 11 pt text (23 px), 2 cm margins; returns the page and its text."""
    w, h, margin, size = 1240, 1754, 118, 23
    font = ImageFont.truetype(FONT, size)
    im = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(im)
    y = margin
    lines_out = []
    for para in PARAGRAPHS:
        for line in textwrap.wrap(para, width=82):
            draw.text((margin, y), line, font=font, fill="black")
            lines_out.append(line)
            y += int(size * 1.5)
        y += size
    return im, "\n".join(lines_out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} CPUs (`nproc`), {model}, {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"load average at start {load:.2f}"
    )


def start_worker(port: int) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vlmswap", "worker", "--engine", "rapidocr", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}/health"
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1, trust_env=False).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        if time.perf_counter() - t0 > 120:
            raise TimeoutError("worker not ready in 120 s")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def fresh_direct_load() -> float:
    """A fresh process importing RapidOCR and creating its sessions: the floor for start-to-ready."""
    code = (
        "import time; t=time.perf_counter(); "
        "from vlmswap.worker.engines.rapidocr_engine import RapidOCREngine; RapidOCREngine().load(); "
        "print(time.perf_counter()-t)"
    )
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = ap.parse_args()

    page, truth = render_a4()
    buf = io.BytesIO()
    page.save(buf, format="PNG")
    png = buf.getvalue()
    body = json.dumps(
        {
            "model": "rapidocr",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64," + base64.b64encode(png).decode()},
                        },
                        {"type": "text", "text": "Read this page."},
                    ],
                }
            ],
        }
    ).encode()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ocr-"))
    (tmp / "page.png").write_bytes(png)
    tesseract = shutil.which("tesseract")

    engine = RapidOCREngine()
    engine.load()

    def direct() -> str:
        return render(None, engine.read(page), page.size)  # what the worker answers a plain prompt

    starts, fresh_loads = [], []
    for _ in range(args.runs):
        fresh_loads.append(fresh_direct_load())
        proc, ready = start_worker(free_port())
        starts.append(ready)
        stop(proc)

    port = free_port()
    proc, _ = start_worker(port)
    times: dict[str, list[float]] = {"direct": [], "worker": [], "tesseract": []}
    # CPU seconds per page, less sensitive than wall time when other jobs share the cores:
    # direct = this process; worker = the worker process plus this (client) process.
    cpu: dict[str, list[float]] = {"direct": [], "worker": []}
    wproc = psutil.Process(proc.pid)

    def worker_cpu() -> float:
        t = wproc.cpu_times()
        return t.user + t.system

    texts: dict[str, str] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False) as client:
            headers = {"content-type": "application/json"}
            direct()  # first-run allocations on both sides, not measured
            client.post("/v1/chat/completions", content=body, headers=headers).raise_for_status()
            for _ in range(args.runs):
                c, t = time.process_time(), time.perf_counter()
                texts["direct"] = direct()
                times["direct"].append(time.perf_counter() - t)
                cpu["direct"].append(time.process_time() - c)

                c, wc, t = time.process_time(), worker_cpu(), time.perf_counter()
                r = client.post("/v1/chat/completions", content=body, headers=headers)
                r.raise_for_status()
                times["worker"].append(time.perf_counter() - t)
                cpu["worker"].append(time.process_time() - c + worker_cpu() - wc)
                texts["worker"] = r.json()["choices"][0]["message"]["content"]

                if tesseract:
                    t = time.perf_counter()
                    out = subprocess.run(
                        [tesseract, str(tmp / "page.png"), "-", "-l", "eng"], check=True, capture_output=True, text=True
                    )
                    times["tesseract"].append(time.perf_counter() - t)
                    texts["tesseract"] = out.stdout
    finally:
        stop(proc)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    versions = {"rapidocr": _version("rapidocr"), "onnxruntime": _version("onnxruntime")}
    tess_version = (
        subprocess.run([tesseract, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if tesseract
        else "not installed"
    )
    overhead = (med["worker"] / med["direct"] - 1) * 100
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    cpu_overhead = (cmed["worker"] / cmed["direct"] - 1) * 100

    print(f"Machine: {machine()}")
    print(f"Versions: rapidocr {versions['rapidocr']}, onnxruntime {versions['onnxruntime']}, {tess_version}")
    print(
        f"Page: A4 at 150 dpi, 1240x1754, {len(truth.split())} words in {len(truth.splitlines())} lines; "
        f"PNG {len(png) // 1024} KiB, request body {len(body) // 1024} KiB. Medians of {args.runs} runs."
    )
    print()
    best = {k: min(v) for k, v in times.items() if v}
    best_overhead = (best["worker"] / best["direct"] - 1) * 100
    print(
        "| reader | wall s/page (median) | pages/s | wall s/page (best) | CPU s/page (median) "
        "| CER vs. known text | start-to-ready s (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| RapidOCR in-process (direct) | {med['direct']:.3f} | {1 / med['direct']:.2f} | {best['direct']:.3f} | "
        f"{cmed['direct']:.2f} | {cer(truth, texts['direct']):.2%} | "
        f"{statistics.median(fresh_loads):.2f} (fresh process: import + sessions) |"
    )
    print(
        f"| vlmswap worker (HTTP, PNG data URL) | {med['worker']:.3f} | {1 / med['worker']:.2f} | "
        f"{best['worker']:.3f} | {cmed['worker']:.2f} | {cer(truth, texts['worker']):.2%} | "
        f"{statistics.median(starts):.2f} (spawn to /health 200) |"
    )
    if "tesseract" in med:
        print(
            f"| Tesseract CLI (`-l eng`, process per page) | {med['tesseract']:.3f} | {1 / med['tesseract']:.2f} | "
            f"{best['tesseract']:.3f} | - | {cer(truth, texts['tesseract']):.2%} | - |"
        )
    print()
    print(
        f"Worker overhead over direct: {overhead:+.1f}% wall (median), {best_overhead:+.1f}% wall (best), "
        f"{cpu_overhead:+.1f}% CPU (median); goal: at most +10%"
    )
    print(f"Load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "times": times,
                    "cpu": cpu,
                    "starts": starts,
                    "fresh_loads": fresh_loads,
                    "overhead_pct": overhead,
                    "cpu_overhead_pct": cpu_overhead,
                },
                indent=2,
            )
        )


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
