"""Benchmark: a 20-page PDF as one document job against page-by-page `POST /api/ocr` calls.

The same PDF (A4 pages at 100 dpi, a few lines of text each, so the engine's share stays small
and the gateway's own cost shows) is read through a real `vlmswap serve` with a real rapidocr
worker, resident before timing starts:
  - as one job: `POST /api/jobs`, then its events until `ended` (`gateway.jobs_concurrency` 1,
    and on a second gateway 2);
  - page by page: one `POST /api/ocr` per page with `pages=N`, the whole PDF uploaded each
    time, one after another (what the web UI did before jobs).
Reported per method: wall time for the document, the gateway process's CPU seconds (user +
system, the gateway alone, from /proc) and the worker's. Methods are interleaved run by run,
in a rotating order; all numbers are medians.

Run: .venv/bin/python bench/document_jobs.py [--pages 20] [--runs 3] [--write]
(--write replaces the `## Document jobs` section of bench/README.md with the results).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gateway_common import PY, free_port, machine, registry_yaml, spawned, wait_http, write_section

from tests.documents.conftest import pdf_bytes, render_pages  # noqa: E402
from tests.support import worker_cmd  # noqa: E402

DPI = 100


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def worker_pid(url: str) -> int:
    st = httpx.get(f"{url}/api/status", trust_env=False).json()
    return st["models"]["ocr"]["pids"][0]


def as_job(url: str, pdf: bytes) -> int:
    r = httpx.post(
        f"{url}/api/jobs",
        files={"file": ("doc.pdf", pdf)},
        data={"model": "ocr", "dpi": str(DPI)},
        trust_env=False,
        timeout=120,
    )
    r.raise_for_status()
    jid = r.json()["id"]
    with httpx.stream("GET", f"{url}/api/jobs/{jid}/events", trust_env=False, timeout=600) as s:
        for line in s.iter_lines():
            if line.startswith("data:") and json.loads(line[5:]).get("step") == "ended":
                break
    job = httpx.get(f"{url}/api/jobs/{jid}", trust_env=False).json()
    assert job["state"] == "done" and job["pages_failed"] == 0, job
    return job["pages_done"]


def page_by_page(url: str, pdf: bytes, pages: int) -> int:
    done = 0
    with httpx.Client(trust_env=False, timeout=600) as c:
        for n in range(1, pages + 1):
            r = c.post(
                f"{url}/api/ocr",
                files={"file": ("doc.pdf", pdf)},
                data={"model": "ocr", "dpi": str(DPI), "pages": str(n)},
            )
            r.raise_for_status()
            done += len(r.json()["document"]["pages"])
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update the section in bench/README.md")
    args = ap.parse_args()

    texts = [
        [
            f"Page {i} of the benchmark document.",
            "The quick brown fox jumps over the lazy dog.",
            f"Invoice number {4700 + i}, total amount due {i * 12.5:.2f} EUR.",
        ]
        for i in range(1, args.pages + 1)
    ]
    pdf = pdf_bytes(render_pages(texts).images, dpi=DPI)
    about = machine()
    load_start = os.getloadavg()[0]
    model = {
        "served_name": "ocr",
        "cmd": worker_cmd("rapidocr", python=PY),
        "family": "rapidocr",
        "capabilities": ["ocr"],
        "startup_timeout_s": 180,
    }
    rows: dict[str, dict[str, list[float]]] = {k: {"wall": [], "gw": [], "worker": []} for k in ("job1", "job2", "ocr")}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        gws = {}
        for conc in (1, 2):
            reg = tmp / f"registry{conc}.yaml"
            reg.write_text(registry_yaml({"ocr": model}, jobs_concurrency=conc))
            gws[conc] = port = free_port()
            gws[f"cm{conc}"] = spawned(
                [PY, "-m", "vlmswap", "serve", "--config", str(reg), "--port", str(port), "--preload", "ocr"],
                env={"VLMSWAP_STATE_DIR": str(tmp / f"state{conc}")},
                log=tmp / f"gateway{conc}.log",
            )
        with gws["cm1"] as p1, gws["cm2"] as p2:
            procs = {1: p1, 2: p2}
            for conc in (1, 2):
                wait_http("127.0.0.1", gws[conc], "/health", 120, procs[conc])
                url = f"http://127.0.0.1:{gws[conc]}"
                deadline = time.monotonic() + 180
                while httpx.get(f"{url}/api/status", trust_env=False).json()["resident"] != "ocr":
                    assert time.monotonic() < deadline, "the worker did not start"
                    time.sleep(0.2)
                page_by_page(url, pdf, 1)  # warm: the first page pays the engine's sessions
            methods = [("job1", 1), ("ocr", 1), ("job2", 2)]
            for r in range(args.runs):
                for key, conc in methods[r % 3 :] + methods[: r % 3]:  # each method goes first once in 3 runs
                    url = f"http://127.0.0.1:{gws[conc]}"
                    gpid, wpid = procs[conc].pid, worker_pid(url)
                    g0, w0, t0 = cpu_s(gpid), cpu_s(wpid), time.perf_counter()
                    done = as_job(url, pdf) if key != "ocr" else page_by_page(url, pdf, args.pages)
                    rows[key]["wall"].append(time.perf_counter() - t0)
                    rows[key]["gw"].append(cpu_s(gpid) - g0)
                    rows[key]["worker"].append(cpu_s(wpid) - w0)
                    assert done == args.pages
                    print(
                        f"run {r + 1}/{args.runs} {key}: {rows[key]['wall'][-1]:.1f} s wall, "
                        f"gateway {rows[key]['gw'][-1]:.2f} CPU s",
                        file=sys.stderr,
                    )
    names = {
        "job1": "one job (`POST /api/jobs` + its events), `jobs_concurrency` 1",
        "job2": "one job, `jobs_concurrency` 2",
        "ocr": f"{args.pages} × `POST /api/ocr` with `pages=N` (whole PDF uploaded each time), one after another",
    }
    med = {k: {m: statistics.median(v[m]) for m in v} for k, v in rows.items()}
    lines = [
        "## Document jobs",
        "",
        f"`bench/document_jobs.py --pages {args.pages} --runs {args.runs}`: a {args.pages}-page PDF "
        f"({len(pdf) // 1024} KiB, A4 at {DPI} dpi, 3 lines of text a page) through a real `vlmswap serve` "
        f"and a resident rapidocr worker; {args.runs} interleaved runs (rotating order); medians.",
        f"Machine: {about}; load average {load_start:.1f} at start, {os.getloadavg()[0]:.1f} at the end "
        "(shared with other engineers' test suites).",
        "",
        "| method | wall s (document) | gateway CPU s | gateway CPU ms/page | worker CPU s |",
        "|---|---|---|---|---|",
    ]
    for key, label in names.items():
        m = med[key]
        lines.append(
            f"| {label} | {m['wall']:.1f} | {m['gw']:.2f} | {1000 * m['gw'] / args.pages:.0f} | {m['worker']:.1f} |"
        )
    lines += [
        "",
        "Per run (wall s / gateway CPU s): "
        + "; ".join(
            f"{k} " + ", ".join(f"{w:.1f}/{g:.2f}" for w, g in zip(rows[k]["wall"], rows[k]["gw"])) for k in rows
        ),
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section("Document jobs", section)


if __name__ == "__main__":
    main()
