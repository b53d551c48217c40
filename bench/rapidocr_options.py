"""Benchmark: RapidOCR's options on real typeset PDF pages at 150 dpi, against Tesseract 5.

Pages: TeX-typeset manuals that Debian ships as PDF (libtasn1-doc's libtasn1.pdf and
shared-mime-info's spec), rendered at 150 dpi with pypdfium2; the reference text is the PDF's
own text layer (soft hyphens as '-', whitespace runs collapsed), so CER needs no hand labels.
Each variant is one RapidOCR configuration on top of the engine's tuned defaults
(`rapidocr_engine.tuned_params`; "before" restores RapidOCR's own), created once; pages are
read in turn, variants interleaved page by page so that load from other processes falls on
all of them alike.
Tesseract 5 runs as its CLI is used (`tesseract page.png - --dpi 150 -l eng`, a process per page).

Timing: wall seconds and CPU seconds (getrusage: this process for RapidOCR, the children
for Tesseract) per page. The machine is shared, so CPU seconds are the steadier number;
pages/s is 1 / median wall seconds.

Run: .venv/bin/python bench/rapidocr_options.py [--runs 1] [--variants before,after,...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from vlmswap.documents.metrics import cer  # noqa: E402
from vlmswap.worker.engines.rapidocr_engine import RapidOCREngine, ink_measure, render  # noqa: E402

DPI = 150
PDFS = [
    ("/usr/share/doc/libtasn1-doc/libtasn1.pdf", [3, 4, 5]),
    ("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf", [2, 3, 4]),
]

#: RapidOCR's own defaults, as the engine used them (on onnxruntime) before it was tuned.
BEFORE: dict[str, Any] = {
    "Det.limit_type": "min",
    "Det.limit_side_len": 736,
    "Rec.rec_batch_num": 6,
    "EngineConfig.onnxruntime.intra_op_num_threads": -1,
}
#: name -> (runtime, RapidOCR params on top of the engine's defaults for that runtime: rapidocr_engine.tuned_params);
#: each "before+" changes one option of "before"; "after" is the engine as shipped (OpenVINO when installed).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "before": ("onnxruntime", BEFORE),
    "before+threads-1": ("onnxruntime", {**BEFORE, "EngineConfig.onnxruntime.intra_op_num_threads": 1}),
    "before+det-max-1280": ("onnxruntime", {**BEFORE, "Det.limit_type": "max", "Det.limit_side_len": 1280}),
    "before+det-max-960": ("onnxruntime", {**BEFORE, "Det.limit_type": "max", "Det.limit_side_len": 960}),
    "before+rec-batch-1": ("onnxruntime", {**BEFORE, "Rec.rec_batch_num": 1}),
    "before+rec-batch-24": ("onnxruntime", {**BEFORE, "Rec.rec_batch_num": 24}),
    "after-onnxruntime": ("onnxruntime", {}),
    "after": ("auto", {}),
    "after+det-max-1280": ("auto", {"Det.limit_side_len": 1280}),
    "after+rec-batch-1": ("auto", {"Rec.rec_batch_num": 1}),
    "after+threads-2": (
        "auto",
        {"EngineConfig.onnxruntime.intra_op_num_threads": 2, "EngineConfig.openvino.inference_num_threads": 2},
    ),
}
DEFAULT_VARIANTS = (
    "before,before+threads-1,before+det-max-960,before+rec-batch-1,after-onnxruntime,after,after+det-max-1280"
)


def pages() -> list[tuple[str, Any, str]]:
    import pypdfium2 as pdfium

    out = []
    for path, numbers in PDFS:
        if not os.path.exists(path):
            continue
        doc = pdfium.PdfDocument(path)
        for n in numbers:
            page = doc[n]
            image = page.render(scale=DPI / 72).to_pil().convert("RGB")
            truth = page.get_textpage().get_text_bounded().replace("\x02", "-")
            out.append((f"{Path(path).stem} p{n + 1}", image, truth))
    return out


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    model = "?"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    return (
        f"{os.cpu_count()} CPUs ({model}), {mem:.1f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}; load average at start {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="passes over the pages")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated, from: " + "; ".join(VARIANTS))
    args = ap.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    engines = {}
    for name in names:
        runtime, params = VARIANTS[name]
        e = RapidOCREngine(runtime=runtime, params=params)  # type: ignore[arg-type]
        e.load()
        engines[name] = e
    tesseract = shutil.which("tesseract")
    todo = pages()
    if not todo:
        sys.exit(
            "rapidocr_options: no pages; install the manuals: scripts/system-deps.sh bench "
            "(libtasn1-doc, shared-mime-info)"
        )
    tmp = Path(tempfile.mkdtemp(prefix="bench-ropt-"))
    wall: dict[str, list[float]] = {n: [] for n in [*names, "tesseract"]}
    cpu: dict[str, list[float]] = {n: [] for n in [*names, "tesseract"]}
    errs: dict[str, list[float]] = {n: [] for n in [*names, "tesseract"]}
    engines[names[0]].read(todo[0][1])  # first-run allocations, not measured
    for _ in range(args.runs):
        for label, image, truth in todo:
            png = tmp / "page.png"
            image.save(png)
            for name in names:
                c, t = cpu_self(), time.perf_counter()
                # the whole answer as the worker gives it: detection, recognition and the layout step
                # (ink measures, tables, paragraphs, reading order)
                text = render(None, engines[name].read(image), image.size, measure=ink_measure(image, image.size))
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(cpu_self() - c)
                errs[name].append(cer(truth, text))
            if tesseract:
                c, t = cpu_children(), time.perf_counter()
                out = subprocess.run(
                    [tesseract, str(png), "-", "--dpi", str(DPI), "-l", "eng"],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                wall["tesseract"].append(time.perf_counter() - t)
                cpu["tesseract"].append(cpu_children() - c)
                errs["tesseract"].append(cer(truth, out.stdout))
            print(
                f"{label}: "
                + ", ".join(f"{n} {wall[n][-1]:.2f}s {cpu[n][-1]:.2f}cpu {errs[n][-1]:.2%}" for n in wall if wall[n]),
                file=sys.stderr,
                flush=True,
            )
    from importlib.metadata import version

    tess = (
        subprocess.run([tesseract, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
        if tesseract
        else "tesseract not installed"
    )
    print(f"Machine: {machine()}")
    try:
        ov = f"openvino {version('openvino')}"
    except Exception:  # not installed
        ov = "openvino not installed"
    print(f"Versions: rapidocr {version('rapidocr')}, onnxruntime {version('onnxruntime')}, {ov}, {tess}")
    print(
        f"Pages: {len(todo)} typeset PDF pages at {DPI} dpi ({', '.join(p[0] for p in todo)}), {args.runs} pass(es); "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )
    print()
    print("| reader | wall s/page (median) | pages/s | CPU s/page (median) | CER (median) | CER (max) |")
    print("|---|---|---|---|---|---|")
    for n in wall:
        if not wall[n]:
            continue
        params = ", ".join(f"`{k}={v}`" for k, v in VARIANTS.get(n, ("", {}))[1].items())
        runtime = "" if n == "tesseract" else f", {engines[n].runtime}"
        label = (
            "Tesseract 5 CLI"
            if n == "tesseract"
            else f"rapidocr {n}{runtime}" + (f" ({params})" if params else " (the engine's defaults)")
        )
        w = statistics.median(wall[n])
        print(
            f"| {label} | {w:.2f} | {1 / w:.2f} | {statistics.median(cpu[n]):.2f} | "
            f"{statistics.median(errs[n]):.2%} | {max(errs[n]):.2%} |"
        )


if __name__ == "__main__":
    main()
