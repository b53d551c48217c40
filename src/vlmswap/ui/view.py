"""Pure helpers from the gateway's status to what the UI shows: labels, badges, memory split.

No Streamlit here, so these are plain functions with plain tests. Text is in the current
language (`vlmswap.i18n`, set per browser session); what the gateway wrote (reasons, errors)
goes through `translate_text`, which renders the messages it knows and leaves the rest.
"""

from __future__ import annotations

import html
import re
from typing import Any

from vlmswap.i18n import N_, num, tr, translate_text, trn
from vlmswap.swap.states import ModelState, Phase

PHASES = tuple(p for p in Phase if p != Phase.FAILED)
PHASE_LABELS = {  # English; said through tr()
    Phase.DRAINING: N_("Draining requests in flight"),
    Phase.SLEEPING: N_("Putting the resident model to sleep"),
    Phase.STOPPING: N_("Stopping the resident model"),
    Phase.WAITING_VRAM: N_("Waiting for VRAM to be released"),
    Phase.WAKING: N_("Waking from host RAM"),
    Phase.STARTING: N_("Starting"),
    Phase.LOADING: N_("Loading"),
    Phase.WARMING_UP: N_("Warming up"),
    Phase.READY: N_("Ready"),
    Phase.FAILED: N_("Failed"),
}
BADGE_COLOURS = {"ocr": "blue", "layout": "violet", "chat": "green", "grounding": "orange"}
BADGE_LABELS = {"ocr": N_("OCR"), "layout": N_("layout"), "chat": N_("chat"), "grounding": N_("grounding")}
STATE_LABELS = {  # a model's state in the sidebar, through tr()
    ModelState.READY: N_("ready"),
    ModelState.STARTING: N_("starting"),
    ModelState.WAKING: N_("waking"),
    ModelState.STOPPING: N_("stopping"),
    ModelState.SLEEPING: N_("sleeping"),
    ModelState.FAILED: N_("failed"),
    ModelState.STOPPED: N_("stopped"),
}

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
    return tr("{size} GB", size=num((n or 0) / 1e9))


def fmt_size_i18n(n: int | None) -> str:
    """The hub's sizes (`fmt_size`: "513.0 MB", "4.4 GB") in the language's units and decimal mark."""
    if n is None:
        return tr("size unknown")
    if n >= 1e9:
        return tr("{size} GB", size=num(n / 1e9))
    if n >= 1e5:
        return tr("{size} MB", size=num(n / 1e6))
    return tr("{size} kB", size=f"{n / 1e3:.0f}")


def phase_label(phase: str) -> str:
    if phase in PHASE_LABELS:
        return tr(PHASE_LABELS[Phase(phase)])
    return phase.replace("_", " ").capitalize() or tr("Waiting")


def state_label(state: str) -> str:
    return tr(STATE_LABELS[ModelState(state)]) if state in STATE_LABELS else state


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
        text = tr(
            "{phase} · {elapsed} s · about {left} s left",
            phase=phase_label(phase),
            elapsed=num(elapsed),
            left=f"{left:.0f}",
        )
        return min(0.99, elapsed / eta_s), text
    return phase_fraction(phase), tr("{phase} · {elapsed} s", phase=phase_label(phase), elapsed=num(elapsed))


def stats_line(model: dict[str, Any]) -> str:
    """What the gateway has learned about the model (medians), "" before its first load."""
    stats = model.get("stats") or {}
    parts = []
    if "cold_start_s" in stats:
        parts.append(tr("cold start {seconds} s", seconds=num(stats["cold_start_s"]["median"])))
    if "wake_s" in stats:
        parts.append(tr("wake {seconds} s", seconds=num(stats["wake_s"]["median"], 2)))
    if "peak_vram_bytes" in stats:
        parts.append(tr("peak VRAM {size}", size=fmt_bytes(stats["peak_vram_bytes"]["median"])))
    if not parts:
        return ""
    runs = max(v["count"] for v in stats.values())
    return tr("learned: {what}", what=" · ".join(parts)) + " " + trn("(1 run)", "({n} runs)", runs)


def badges(capabilities: list[str]) -> str:
    """Streamlit Markdown badges, one per capability."""
    return " ".join(
        f":{BADGE_COLOURS.get(c, 'gray')}-badge[{tr(BADGE_LABELS[c]) if c in BADGE_LABELS else c}]"
        for c in capabilities
    )


def memory_line(model: dict[str, Any], gpu: dict[str, Any]) -> str:
    """What the model needs against what the GPU has free ("no GPU" without one)."""
    need = float(model.get("vram_gb") or 0)
    need_txt = tr("needs {size} VRAM", size=tr("{size} GB", size=num(need))) if need else tr("CPU only, no VRAM")
    if not gpu.get("available"):
        return f"{need_txt} · {tr('no GPU')}"
    free = float(gpu.get("free_bytes") or 0) / 1e9
    ok = tr("fits") if need <= free or model.get("state") == ModelState.READY else tr("more than free now")
    return f"{need_txt} · " + tr("{size} free ({verdict})", size=tr("{size} GB", size=num(free)), verdict=ok)


def sleep_line(model: dict[str, Any]) -> str:
    """What a sleeping model holds, and how fast it last woke ("" when it is not asleep)."""
    if model.get("state") != ModelState.SLEEPING:
        return ""
    ram = fmt_bytes(model.get("sleep_ram_bytes"))
    how = tr("measured") if model.get("sleep_ram_measured") else tr("estimated")
    line = tr("asleep in host RAM: {size} ({how})", size=ram, how=how)
    if model.get("last_wake_s"):
        line += " · " + tr("last woke in {seconds} s", seconds=num(float(model["last_wake_s"]), 2))
    return line


def pool_line(status: dict[str, Any]) -> str:
    """The sleeping pool against its budgets ("" when nobody sleeps)."""
    pool = status.get("pool") or {}
    if not pool.get("count"):
        return ""
    count = trn("Sleeping pool: {n} model", "Sleeping pool: {n} models", int(pool["count"]))
    limit = " " + tr("(at most {n})", n=pool["max_sleeping"]) if pool.get("max_sleeping") is not None else ""
    budget = tr(
        "{used} of {budget} host RAM budget",
        used=fmt_bytes(pool.get("ram_bytes")),
        budget=fmt_bytes(pool.get("ram_budget_bytes")),
    )
    return f"{count}{limit}, {budget}"


def activity_line(model: dict[str, Any]) -> str:
    """Requests in flight and queued for the model, and the backoff after failed starts ("" if none)."""
    parts = []
    if model.get("in_flight"):
        parts.append(tr("{n} in flight", n=model["in_flight"]))
    if model.get("queued"):
        parts.append(tr("{n} queued", n=model["queued"]))
    if model.get("backoff_s"):
        parts.append(tr("next start allowed in {seconds} s", seconds=f"{float(model['backoff_s']):.0f}"))
    return " · ".join(parts)


def host_line(host: dict[str, Any]) -> str:
    total = int(host.get("ram_total_bytes") or 0)
    if not total:
        return ""
    used = total - int(host.get("ram_available_bytes") or 0)
    return tr("Host RAM: {used} of {total} in use", used=fmt_bytes(used), total=fmt_bytes(total))


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


def gpu_reason(gpu: dict[str, Any]) -> str:
    """Why there is no GPU reading, in words ("no NVIDIA GPU found: CPU only"), never a library's class name."""
    reason = str(gpu.get("reason") or "")
    if not reason or re.search(r"\b\w*Error(_\w+)?\b", reason):  # an older gateway's NVMLError_LibraryNotFound
        reason = "no GPU found: CPU only"
    return translate_text(reason)


def memory_bar_html(gpu: dict[str, Any]) -> str:
    """A stacked bar (used split by backend, free in grey) with a legend; plain HTML."""
    total = int(gpu.get("total_bytes") or 0)
    if not gpu.get("available") or total <= 0:
        reason = html.escape(gpu_reason(gpu))
        detail = html.escape(str(gpu.get("detail") or ""))
        title = f' title="{detail}"' if detail else ""
        return f'<div class="vlmswap-gpu"{title}>{tr("GPU")}: {reason}</div>'
    segs = memory_segments(gpu)
    parts, legend = [], []
    for i, (label, n) in enumerate(segs):
        colour = OTHER_COLOUR if label == "other" else SEGMENT_COLOURS[i % len(SEGMENT_COLOURS)]
        shown = tr("other") if label == "other" else label
        pct = 100.0 * n / total
        parts.append(
            f'<div title="{html.escape(shown)}: {fmt_bytes(n)}" '
            f'style="width:{pct:.2f}%;background:{colour};height:100%"></div>'
        )
        legend.append(f'<span style="color:{colour}">■</span> {html.escape(shown)} {fmt_bytes(n)}')
    name = html.escape(str(gpu.get("name") or tr("GPU")))
    vendor = str(gpu.get("vendor") or "").upper()  # as gpu.Vendor.label writes it
    if vendor and vendor.lower() not in name.lower():
        name = f"{vendor} {name}"
    used = int(gpu.get("used_bytes") or 0)
    line = tr("{gpu}: {used} of {total} used", gpu=name, used=fmt_bytes(used), total=fmt_bytes(total))
    return (
        f'<div class="vlmswap-gpu"><div style="font-size:0.85em">{line}</div>'
        f'<div style="display:flex;width:100%;height:12px;background:#e6e6e6;border-radius:3px;'
        f'overflow:hidden">{"".join(parts)}</div>'
        f'<div style="font-size:0.75em">{" · ".join(legend)}</div></div>'
    )


def preset_labels(presets: list[dict[str, Any]], none: str) -> dict[int | None, str]:
    """A preset picker's labels, made now: Streamlit (and AppTest) may call a selectbox's format_func
    outside the script's run, where the session's language is not set."""
    return {None: none, **{i: str(p["name"]) for i, p in enumerate(presets)}}


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
        head = tr("The model's output for this page was unusable as a layout; only its plain text was salvaged")
    elif any(f.startswith("layout_unsupported") for f in flags):
        head = tr("This model reads text only; the page was read in text mode, without boxes")
    elif any(f.startswith(("repair:", "bad_bbox", "boxes_dropped")) for f in flags):
        head = tr("The model's output for this page was malformed; what is shown was salvaged")
    else:
        head = tr("Notes on this page's output")
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
    done, total = fmt_size_i18n(int(job.get("downloaded_bytes") or 0)), fmt_size_i18n(job.get("total_bytes"))
    if job.get("pulling"):
        if not job.get("total_bytes"):
            return tr("Pulling: listing the files…")
        line = tr("Pulling: {done} of {total}", done=done, total=total)
        if job.get("files_total"):
            line += " " + tr("({done}/{total} files)", done=job["files_done"], total=job["files_total"])
        return line
    if job.get("ok"):
        return tr("Downloaded ({size})", size=total)
    return tr("Pull failed: {why}", why=translate_text(str(job.get("message") or "")) or tr("unknown error"))


def no_chat_hint(status: dict[str, Any]) -> str:
    """What the Chat page says when no chat model can run: how to get one, not only that there is none."""
    chat = with_capability(status, "chat")
    pullable = [m for m in chat if needs_pull(m)]
    if pullable:
        best = next((m for m in pullable if m["name"] == CPU_CHAT_MODEL), pullable[0])
        size = str(best["unavailable"])[len(NOT_DOWNLOADED) :].strip(" ()")
        return tr(
            "No chat model can run here yet: **{name}** can once its files are here ({size}). "
            "Press **Pull** on it in the sidebar, or run `vlmswap pull {name}` on the gateway's machine.",
            name=best["name"],
            size=size,
        )
    cpu = next((m for m in chat if m["name"] == CPU_CHAT_MODEL), None)
    if cpu is not None:
        return tr(
            "No chat model can run here. **{name}** runs on a CPU but here it says: {why}. "
            "Install the transformers extra (`pip install 'vlmswap[transformers]'`), restart the gateway, "
            "then `vlmswap pull {name}`.",
            name=cpu["name"],
            why=translate_text(str(cpu["unavailable"])),
        )
    return tr(
        "No chat model can run here. Add one to the registry, e.g. a small image-text-to-text checkpoint "
        "through the transformers engine (see docs/models.md), then `vlmswap pull NAME`."
    )


def prediction_line(status: dict[str, Any]) -> str:
    """The likeliest next models with their chances ("" before the predictor has any history)."""
    shown = [p for p in status.get("predicted") or [] if p.get("why") and "no history" not in p["why"]][:3]
    if not shown:
        return ""
    horizon = status.get("prediction_horizon_s")
    listed = " · ".join(f"{p['model']} {float(p['chance']):.0%}" for p in shown)
    if horizon:
        return tr("Likely next within {seconds} s: {models}", seconds=f"{float(horizon):g}", models=listed)
    return tr("Likely next: {models}", models=listed)


def kept_line(model: dict[str, Any], status: dict[str, Any]) -> str:
    """Why the sleeping pool keeps this sleeper ("" when it is not asleep)."""
    kept = ((status.get("pool") or {}).get("kept") or {}).get(model.get("name"))
    return tr("kept in the pool: {why}", why=kept["why"]) if kept else ""  # the gateway's reason stays English
