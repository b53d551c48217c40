"""The pure parts of the UI: what the sidebar says about models and GPU memory."""

from __future__ import annotations

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

GPU = {"available": True, "name": "RTX 5070 Ti", "total_bytes": 12_000_000_000, "used_bytes": 7_500_000_000,
       "free_bytes": 4_500_000_000, "per_backend": {"dots-ocr": 7_000_000_000}}


def test_memory_split_by_backend_leaves_the_rest_as_other():
    assert memory_segments(GPU) == [("dots-ocr", 7_000_000_000), ("other", 500_000_000)]


def test_memory_bar_without_gpu_says_why():
    html = memory_bar_html({"available": False, "reason": "no NVIDIA GPU (NVMLError)"})
    assert "no NVIDIA GPU (NVMLError)" in html and "width:" not in html


def test_memory_bar_escapes_backend_names():
    html = memory_bar_html({**GPU, "per_backend": {"<b>x</b>": 1_000_000_000}})
    assert "<b>x</b>" not in html and "&lt;b&gt;" in html


def test_memory_line_compares_need_with_free():
    assert memory_line({"vram_gb": 7.8}, GPU) == "needs 7.8 GB VRAM · 4.5 GB free (more than free now)"
    assert memory_line({"vram_gb": 4.0}, GPU).endswith("(fits)")
    assert memory_line({"vram_gb": 0}, {"available": False}) == "CPU only, no VRAM · no GPU"


def test_badges_name_each_capability():
    assert badges(["ocr", "layout", "chat", "grounding"]) == (
        ":blue-badge[OCR] :violet-badge[layout] :green-badge[chat] :orange-badge[grounding]")


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
    assert flags_message(["layout_unsupported: family phi3_v gives text only"]).startswith(
        "This model reads text only")


def test_activity_and_host_lines_say_only_what_there_is():
    assert activity_line({"in_flight": 0, "queued": 0, "backoff_s": None}) == ""
    assert activity_line({"in_flight": 2, "queued": 1, "backoff_s": 7.6}) == (
        "2 in flight · 1 queued · next start allowed in 8 s")
    assert host_line({"ram_total_bytes": 64e9, "ram_available_bytes": 48e9}) == "Host RAM: 16.0 GB of 64.0 GB in use"
    assert host_line({}) == ""
