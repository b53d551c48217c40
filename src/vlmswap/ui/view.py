"""Pure helpers from the gateway's status to what the UI shows: labels, badges, memory split.

No Streamlit here, so these are plain functions with plain tests.
"""

from __future__ import annotations

import html
from typing import Any

from vlmswap.registry.hub import fmt_size
from vlmswap.swap.states import ModelState, Phase

PHASES = tuple(p for p in Phase if p != Phase.FAILED)
PHASE_LABELS = {
    Phase.DRAINING: "Draining requests in flight",
    Phase.SLEEPING: "Putting the resident model to sleep",
    Phase.STOPPING: "Stopping the resident model",
    Phase.WAITING_VRAM: "Waiting for VRAM to be released",
    Phase.WAKING: "Waking from host RAM",
    Phase.STARTING: "Starting",
    Phase.LOADING: "Loading",
    Phase.WARMING_UP: "Warming up",
    Phase.READY: "Ready",
    Phase.FAILED: "Failed",
}
BADGE_COLOURS = {"ocr": "blue", "layout": "violet", "chat": "green", "grounding": "orange"}
BADGE_LABELS = {"ocr": "OCR", "layout": "layout", "chat": "chat", "grounding": "grounding"}
STATE_ICONS = {
    ModelState.READY: ":green[●]",
    ModelState.STARTING: ":orange[●]",
    ModelState.WAKING: ":orange[●]",
    ModelState.STOPPING: ":orange[●]",
    ModelState.SLEEPING: ":blue[●]",
    ModelState.FAILED: ":red[●]",
    ModelState.STOPPED: ":gray[○]",
}
# Colours of the GPU bar's segments, one per backend process, then "other".
SEGMENT_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2")
OTHER_COLOUR = "#9d9d9d"


def models(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The status' models as a list of dicts with `name`, whatever shape the gateway used."""
    raw = status.get("models") or []
    if isinstance(raw, dict):
        return [{"name": k, **v} for k, v in raw.items()]
    return list(raw)


def fmt_bytes(n: float | int | None) -> str:
    if not n:
        return "0 GB"
    return f"{n / 1e9:.1f} GB"


def phase_label(phase: str) -> str:
    return PHASE_LABELS.get(phase, phase.replace("_", " ").capitalize() or "Waiting")


def phase_fraction(phase: str) -> float:
    """Rough position of a phase in a switch, for a progress bar that only moves forward."""
    if phase in (Phase.READY, Phase.FAILED):
        return 1.0
    if phase in PHASES:
        return (PHASES.index(phase) + 0.5) / len(PHASES)
    return 0.05


def time_bar(phase: str, elapsed: float, eta_s: float | None) -> tuple[float, str]:
    """The switch's progress bar: time against the learned expectation when there is one (with the
    time left), else the rough position of the phase."""
    if eta_s and phase not in (Phase.READY, Phase.FAILED):
        left = max(0.0, eta_s - elapsed)
        return min(0.99, elapsed / eta_s), f"{phase_label(phase)} · {elapsed:.1f} s · about {left:.0f} s left"
    return phase_fraction(phase), f"{phase_label(phase)} · {elapsed:.1f} s"


def stats_line(model: dict[str, Any]) -> str:
    """What the gateway has learned about the model (medians), "" before its first load."""
    stats = model.get("stats") or {}
    parts = []
    if "cold_start_s" in stats:
        parts.append(f"cold start {stats['cold_start_s']['median']:.1f} s")
    if "wake_s" in stats:
        parts.append(f"wake {stats['wake_s']['median']:.2f} s")
    if "peak_vram_bytes" in stats:
        parts.append(f"peak VRAM {fmt_bytes(stats['peak_vram_bytes']['median'])}")
    if not parts:
        return ""
    runs = max(v["count"] for v in stats.values())
    return "learned: " + " · ".join(parts) + f" ({runs} runs)"


def badges(capabilities: list[str]) -> str:
    """Streamlit Markdown badges, one per capability."""
    return " ".join(f":{BADGE_COLOURS.get(c, 'gray')}-badge[{BADGE_LABELS.get(c, c)}]" for c in capabilities)


def memory_line(model: dict[str, Any], gpu: dict[str, Any]) -> str:
    """What the model needs against what the GPU has free ("no GPU" without one)."""
    need = float(model.get("vram_gb") or 0)
    need_txt = f"needs {need:.1f} GB VRAM" if need else "CPU only, no VRAM"
    if not gpu.get("available"):
        return f"{need_txt} · no GPU"
    free = float(gpu.get("free_bytes") or 0) / 1e9
    ok = "fits" if need <= free or model.get("state") == ModelState.READY else "more than free now"
    return f"{need_txt} · {free:.1f} GB free ({ok})"


def sleep_line(model: dict[str, Any]) -> str:
    """What a sleeping model holds, and how fast it last woke ("" when it is not asleep)."""
    if model.get("state") != ModelState.SLEEPING:
        return ""
    ram = fmt_bytes(model.get("sleep_ram_bytes"))
    how = "measured" if model.get("sleep_ram_measured") else "estimated"
    woke = f" · last woke in {float(model['last_wake_s']):.2f} s" if model.get("last_wake_s") else ""
    return f"asleep in host RAM: {ram} ({how}){woke}"


def pool_line(status: dict[str, Any]) -> str:
    """The sleeping pool against its budgets ("" when nobody sleeps)."""
    pool = status.get("pool") or {}
    if not pool.get("count"):
        return ""
    limit = f" (at most {pool['max_sleeping']})" if pool.get("max_sleeping") is not None else ""
    return (
        f"Sleeping pool: {pool['count']} model(s){limit}, {fmt_bytes(pool.get('ram_bytes'))} of "
        f"{fmt_bytes(pool.get('ram_budget_bytes'))} host RAM budget"
    )


def activity_line(model: dict[str, Any]) -> str:
    """Requests in flight and queued for the model, and the backoff after failed starts ("" if none)."""
    parts = []
    if model.get("in_flight"):
        parts.append(f"{model['in_flight']} in flight")
    if model.get("queued"):
        parts.append(f"{model['queued']} queued")
    if model.get("backoff_s"):
        parts.append(f"next start allowed in {float(model['backoff_s']):.0f} s")
    return " · ".join(parts)


def host_line(host: dict[str, Any]) -> str:
    total = int(host.get("ram_total_bytes") or 0)
    if not total:
        return ""
    used = total - int(host.get("ram_available_bytes") or 0)
    return f"Host RAM: {fmt_bytes(used)} of {fmt_bytes(total)} in use"


def _per_backend(gpu: dict[str, Any]) -> dict[str, int]:
    for key in ("per_backend", "per-backend", "backends", "by_backend"):
        val = gpu.get(key)
        if isinstance(val, dict):
            return {
                str(k): int(v.get("bytes", v.get("used_bytes", 0)) if isinstance(v, dict) else v or 0)
                for k, v in val.items()
            }
    return {}


def memory_segments(gpu: dict[str, Any]) -> list[tuple[str, int]]:
    """GPU memory in use split into (label, bytes): each backend, then everything else."""
    used = int(gpu.get("used_bytes") or 0)
    segs = [(k, v) for k, v in _per_backend(gpu).items() if v > 0]
    rest = used - sum(v for _, v in segs)
    if rest > 0:
        segs.append(("other", rest))
    return segs


def memory_bar_html(gpu: dict[str, Any]) -> str:
    """A stacked bar (used split by backend, free in grey) with a legend; plain HTML."""
    total = int(gpu.get("total_bytes") or 0)
    if not gpu.get("available") or total <= 0:
        reason = html.escape(str(gpu.get("reason") or "no NVIDIA GPU"))
        return f'<div class="vlmswap-gpu">GPU: {reason}</div>'
    segs = memory_segments(gpu)
    parts, legend = [], []
    for i, (label, n) in enumerate(segs):
        colour = OTHER_COLOUR if label == "other" else SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)]
        pct = 100.0 * n / total
        parts.append(
            f'<div title="{html.escape(label)}: {fmt_bytes(n)}" '
            f'style="width:{pct:.2f}%;background:{colour};height:100%"></div>'
        )
        legend.append(f'<span style="color:{colour}">■</span> {html.escape(label)} {fmt_bytes(n)}')
    name = html.escape(str(gpu.get("name") or "GPU"))
    used = int(gpu.get("used_bytes") or 0)
    return (
        f'<div class="vlmswap-gpu"><div style="font-size:0.85em">{name}: {fmt_bytes(used)} of '
        f"{fmt_bytes(total)} used</div>"
        f'<div style="display:flex;width:100%;height:12px;background:#e6e6e6;border-radius:3px;'
        f'overflow:hidden">{"".join(parts)}</div>'
        f'<div style="font-size:0.75em">{" · ".join(legend)}</div></div>'
    )


def resident_name(status: dict[str, Any]) -> str | None:
    res = status.get("resident")
    if isinstance(res, dict):
        return res.get("name")
    if res:
        return str(res)
    for m in models(status):
        if m.get("state") == ModelState.READY:
            return m.get("name")
    return None


def with_capability(status: dict[str, Any], capability: str) -> list[dict[str, Any]]:
    return [m for m in models(status) if capability in (m.get("capabilities") or [])]


def flags_message(flags: list[str]) -> str:
    """What a page's flags (documents.parsers) mean for the reader, then the flags themselves."""
    if any(f.startswith("fallback_text") for f in flags):
        head = "The model's output for this page was unusable as a layout; only its plain text was salvaged"
    elif any(f.startswith("layout_unsupported") for f in flags):
        head = "This model reads text only; the page was read in text mode, without boxes"
    elif any(f.startswith(("repair:", "bad_bbox", "boxes_dropped")) for f in flags):
        head = "The model's output for this page was malformed; what is shown was salvaged"
    else:
        head = "Notes on this page's output"
    return f"{head} ({'; '.join(flags)})."


# --- model files (pulls) --------------------------------------------------------------------

NOT_DOWNLOADED = "not downloaded"
CPU_CHAT_MODEL = "smolvlm"  # the default registry's chat model for machines without a GPU


def needs_pull(model: dict[str, Any]) -> bool:
    """The model's only trouble here is that its files are not in the gateway's cache."""
    return str(model.get("unavailable") or "").startswith(NOT_DOWNLOADED)


def pull_fraction(job: dict[str, Any]) -> float:
    total = int(job.get("total_bytes") or 0)
    return min(1.0, int(job.get("downloaded_bytes") or 0) / total) if total else 0.0


def pull_line(job: dict[str, Any]) -> str:
    """ "Pulling: 120 MB of 513 MB (3/9 files)", or how the last pull ended."""
    done, total = fmt_size(int(job.get("downloaded_bytes") or 0)), fmt_size(job.get("total_bytes"))
    files = f" ({job['files_done']}/{job['files_total']} files)" if job.get("files_total") else ""
    if job.get("pulling"):
        return f"Pulling: {done} of {total}{files}" if job.get("total_bytes") else "Pulling: listing the files…"
    if job.get("ok"):
        return f"Downloaded ({total})"
    return f"Pull failed: {job.get('message') or 'unknown error'}"


def no_chat_hint(status: dict[str, Any]) -> str:
    """What the Chat page says when no chat model can run: how to get one, not only that there is none."""
    chat = with_capability(status, "chat")
    pullable = [m for m in chat if needs_pull(m)]
    if pullable:
        best = next((m for m in pullable if m["name"] == CPU_CHAT_MODEL), pullable[0])
        size = str(best["unavailable"])[len(NOT_DOWNLOADED) :].strip(" ()")
        return (
            f"No chat model can run here yet: **{best['name']}** can once its files are here ({size}). "
            f"Press **Pull** on it in the sidebar, or run `vlmswap pull {best['name']}` on the gateway's machine."
        )
    cpu = next((m for m in chat if m["name"] == CPU_CHAT_MODEL), None)
    if cpu is not None:
        return (
            f"No chat model can run here. **{cpu['name']}** runs on a CPU but here it says: {cpu['unavailable']}. "
            f"Install the transformers extra (`pip install 'vlmswap[transformers]'`), restart the gateway, "
            f"then `vlmswap pull {cpu['name']}`."
        )
    return (
        "No chat model can run here. Add one to the registry, e.g. a small image-text-to-text checkpoint "
        "through the transformers engine (see docs/models.md), then `vlmswap pull NAME`."
    )


def prediction_line(status: dict[str, Any]) -> str:
    """The likeliest next models with their chances ("" before the predictor has any history)."""
    shown = [p for p in status.get("predicted") or [] if p.get("why") and "no history" not in p["why"]][:3]
    if not shown:
        return ""
    horizon = status.get("prediction_horizon_s")
    within = f" within {float(horizon):g} s" if horizon else ""
    return f"Likely next{within}: " + " · ".join(f"{p['model']} {float(p['chance']):.0%}" for p in shown)


def kept_line(model: dict[str, Any], status: dict[str, Any]) -> str:
    """Why the sleeping pool keeps this sleeper ("" when it is not asleep)."""
    kept = ((status.get("pool") or {}).get("kept") or {}).get(model.get("name"))
    return f"kept in the pool: {kept['why']}" if kept else ""
