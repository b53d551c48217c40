"""The pure parts of the UI: what the sidebar says about models and GPU memory."""

from __future__ import annotations

from vlmswap.i18n import use
from vlmswap.ui.view import (
    activity_line,
    badges,
    flags_message,
    host_line,
    memory_bar_html,
    memory_line,
    memory_segments,
    models,
    phase_fraction,
    phase_label,
    resident_name,
)

GPU = {
    "available": True,
    "name": "RTX 5070 Ti",
    "total_bytes": 12_000_000_000,
    "used_bytes": 7_500_000_000,
    "free_bytes": 4_500_000_000,
    "per_backend": {"dots-ocr": 7_000_000_000},
}


def test_memory_split_by_backend_leaves_the_rest_as_other():
    assert memory_segments(GPU) == [("dots-ocr", 7_000_000_000), ("other", 500_000_000)]


def test_memory_bar_without_gpu_says_why_in_words():
    html = memory_bar_html({"available": False, "reason": "no NVIDIA GPU found: CPU only", "detail": "NVIDIA: x"})
    assert "GPU: no NVIDIA GPU found: CPU only" in html and 'title="NVIDIA: x"' in html and "width:" not in html
    # An older gateway's raw library error is never shown as it is.
    old = memory_bar_html({"available": False, "reason": "no NVIDIA GPU (NVMLError_LibraryNotFound)"})
    assert "NVMLError" not in old and "no GPU found: CPU only" in old
    with use("ru"):
        ru = memory_bar_html({"available": False, "reason": "no AMD GPU found: CPU only"})
    assert "GPU: GPU AMD не найден: работаем только на CPU" in ru


def test_memory_bar_names_the_vendor_and_the_card():
    html = memory_bar_html({**GPU, "vendor": "amd", "name": "Radeon RX 7700 XT"})
    assert "AMD Radeon RX 7700 XT: 7.5 GB of 12.0 GB used" in html
    with use("ru"):
        assert "AMD Radeon RX 7700 XT: занято 7,5 ГБ из 12,0 ГБ" in memory_bar_html(
            {**GPU, "vendor": "amd"} | {"name": "Radeon RX 7700 XT"}
        )


def test_memory_bar_escapes_backend_names():
    html = memory_bar_html({**GPU, "per_backend": {"<b>x</b>": 1_000_000_000}})
    assert "<b>x</b>" not in html and "&lt;b&gt;" in html


def test_memory_line_compares_need_with_free():
    assert memory_line({"vram_gb": 7.8}, GPU) == "needs 7.8 GB VRAM · 4.5 GB free (more than free now)"
    assert memory_line({"vram_gb": 4.0}, GPU).endswith("(fits)")
    assert memory_line({"vram_gb": 0}, {"available": False}) == "CPU only, no VRAM · no GPU"


def test_badges_name_each_capability():
    assert badges(["ocr", "layout", "chat", "grounding"]) == (
        ":blue-badge[OCR] :violet-badge[layout] :green-badge[chat] :orange-badge[grounding]"
    )


def test_phases_move_forward_and_end_full():
    order = ["draining", "stopping", "waiting_vram", "starting", "loading", "ready"]
    fractions = [phase_fraction(p) for p in order]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and phase_fraction("failed") == 1.0
    assert phase_label("waiting_vram") == "Waiting for VRAM to be released"


def test_models_and_resident_from_either_status_shape():
    as_list = {"resident": "a", "models": [{"name": "a", "state": "ready"}, {"name": "b", "state": "stopped"}]}
    as_dict = {"models": {"a": {"state": "stopped"}, "b": {"state": "ready"}}}
    assert [m["name"] for m in models(as_list)] == ["a", "b"]
    assert resident_name(as_list) == "a" and resident_name(as_dict) == "b"
    assert resident_name({"resident": None, "models": []}) is None


def test_flags_say_whether_text_or_salvaged_objects_are_shown():
    assert "only its plain text was salvaged (fallback_text: no boxes)" in flags_message(["fallback_text: no boxes"])
    msg = flags_message(["repair:joined_elements:3", "repair:truncated_last_element"])
    assert msg.startswith("The model's output for this page was malformed; what is shown was salvaged")
    assert "repair:joined_elements:3; repair:truncated_last_element" in msg
    assert flags_message(["layout_unsupported: family phi3_v gives text only"]).startswith("This model reads text only")


def test_activity_and_host_lines_say_only_what_there_is():
    assert activity_line({"in_flight": 0, "queued": 0, "backoff_s": None}) == ""
    assert activity_line({"in_flight": 2, "queued": 1, "backoff_s": 7.6}) == (
        "2 in flight · 1 queued · next start allowed in 8 s"
    )
    assert host_line({"ram_total_bytes": 64e9, "ram_available_bytes": 48e9}) == "Host RAM: 16.0 GB of 64.0 GB in use"
    assert host_line({}) == ""


def test_time_bar_counts_down_against_the_learned_eta():
    from vlmswap.ui.view import time_bar

    frac, text = time_bar("loading", 3.0, 12.0)
    assert frac == 0.25 and text.endswith("about 9 s left")
    frac, text = time_bar("loading", 20.0, 12.0)
    assert frac == 0.99 and "about 0 s left" in text  # late: the bar waits at the end, never goes back
    frac, text = time_bar("loading", 3.0, None)
    assert 0 < frac < 1 and "left" not in text


def test_stats_line_shows_medians_and_runs():
    from vlmswap.ui.view import stats_line

    assert stats_line({"stats": {}}) == ""
    line = stats_line(
        {
            "stats": {
                "cold_start_s": {"count": 3, "median": 41.2, "last": 40},
                "wake_s": {"count": 2, "median": 0.31, "last": 0.3},
                "peak_vram_bytes": {"count": 3, "median": 6.2e9, "last": 6.2e9},
            }
        }
    )
    assert line == "learned: cold start 41.2 s · wake 0.31 s · peak VRAM 6.2 GB (3 runs)"


def test_sleep_and_pool_lines():
    from vlmswap.ui.view import pool_line, sleep_line

    assert sleep_line({"state": "ready"}) == ""
    assert (
        sleep_line({"state": "sleeping", "sleep_ram_bytes": 4.4e9, "sleep_ram_measured": True, "last_wake_s": 0.12})
        == "asleep in host RAM: 4.4 GB (measured) · last woke in 0.12 s"
    )
    assert pool_line({"pool": {"count": 0}}) == ""
    assert (
        pool_line({"pool": {"count": 2, "ram_bytes": 8e9, "ram_budget_bytes": 12e9, "max_sleeping": 3}})
        == "Sleeping pool: 2 models (at most 3), 8.0 GB of 12.0 GB host RAM budget"
    )


def test_pull_lines_say_progress_and_outcome():
    from vlmswap.ui.view import pull_fraction, pull_line

    job = {
        "pulling": True,
        "downloaded_bytes": 120_000_000,
        "total_bytes": 513_000_000,
        "files_done": 3,
        "files_total": 9,
    }
    assert pull_line(job) == "Pulling: 120.0 MB of 513.0 MB (3/9 files)"
    assert round(pull_fraction(job), 3) == 0.234
    assert pull_line({"pulling": True, "total_bytes": None}) == "Pulling: listing the files…"
    assert pull_line({"pulling": False, "ok": True, "total_bytes": 513_000_000}) == "Downloaded (513.0 MB)"
    assert pull_line({"pulling": False, "ok": False, "message": "x: 503"}) == "Pull failed: x: 503"


def test_no_chat_hint_says_how_to_get_a_chat_model():
    from vlmswap.ui.view import no_chat_hint

    def status(**unavailable):
        return {"models": {n: {"capabilities": ["chat"], "unavailable": u} for n, u in unavailable.items()}}

    hint = no_chat_hint(status(**{"qwen2-vl-2b": "vllm not installed", "smolvlm": "not downloaded (0.5 GB)"}))
    assert "**smolvlm** can once its files are here (0.5 GB)" in hint and "`vlmswap pull smolvlm`" in hint
    hint = no_chat_hint(status(smolvlm="transformers extra not installed"))
    assert "pip install 'vlmswap[transformers]'" in hint and "`vlmswap pull smolvlm`" in hint
    assert "`vlmswap pull NAME`" in no_chat_hint(status(**{"qwen2-vl-2b": "vllm not installed"}))


def test_the_sidebar_says_what_is_likely_next_and_why_a_sleeper_is_kept():
    from vlmswap.ui.view import kept_line, prediction_line

    status = {
        "prediction_horizon_s": 30,
        "predicted": [
            {"model": "qwen3-vl-2b", "chance": 0.62, "why": "62% within 30 s (after dots-ocr 70%)"},
            {"model": "phi-3.5-vision", "chance": 0.1, "why": "10% within 30 s"},
            {"model": "rapidocr", "chance": 0.5, "why": "50% within 30 s (no history yet)"},
        ],
        "pool": {"kept": {"qwen3-vl-2b": {"worth": 73.5, "why": "keeping it saves 73.5 s expected"}}},
    }
    assert prediction_line(status) == "Likely next within 30 s: qwen3-vl-2b 62% · phi-3.5-vision 10%"
    assert prediction_line({"predicted": [{"model": "a", "chance": 0.5, "why": "no history yet"}]}) == ""
    assert kept_line({"name": "qwen3-vl-2b"}, status) == "kept in the pool: keeping it saves 73.5 s expected"
    assert kept_line({"name": "rapidocr"}, status) == ""
