"""Every flow of the web UI, driven with Streamlit's AppTest against a real gateway subprocess."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.support import free_port
from tests.ui.helpers import APP_FILE, FAILURE_LINE


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def run_ok(target) -> AppTest:
    """Run the app (or the app a clicked widget belongs to); any exception fails the test."""
    at = target.run()
    assert not at.exception, at.exception
    return at


def test_sidebar_lists_models_with_badges_memory_and_why_one_cannot_run(app):
    side = texts(app.sidebar.markdown)
    for name in ("ocr-a", "ocr-b", "tiny-chat", "broken", "big-gpu"):
        assert f"**{name}**" in side
    assert ":blue-badge[OCR] :violet-badge[layout]" in side and ":orange-badge[grounding]" in side
    captions = texts(app.sidebar.caption)
    assert "cannot run here: vllm not installed" in captions
    assert "needs 6.6 GB VRAM" in captions
    assert app.sidebar.button(key="switch_big-gpu").disabled
    assert "resident: **none**" in side


def test_switch_shows_its_phases_and_ends_ready(app, gateway):
    run_ok(app.sidebar.button(key="switch_ocr-a").click())
    assert gateway.resident() == "ocr-a"
    assert "ocr-a is ready" in texts(app.sidebar.success)
    assert "Switch: Starting" in texts(app.sidebar.caption) and "Ready" in texts(app.sidebar.caption)
    # A second switch evicts the first: stopping it is one of the phases shown.
    run_ok(app.sidebar.button(key="switch_ocr-b").click())
    assert gateway.resident() == "ocr-b"
    steps = texts(app.sidebar.caption)
    assert "Stopping the resident model" in steps and "Loading" in steps
    assert app.sidebar.button(key="switch_ocr-b").disabled  # resident now
    run_ok(app.sidebar.button(key="unload_ocr-b").click())
    assert gateway.resident() is None
    assert "ocr-b unloaded." in texts(app.sidebar.success)


def test_sleep_button_parks_the_model_and_wake_brings_it_back(app, gateway):
    run_ok(app.sidebar.button(key="switch_ocr-b").click())
    assert gateway.resident() == "ocr-b"
    run_ok(app.sidebar.button(key="sleep_ocr-b").click())
    assert "ocr-b is going to sleep." in texts(app.sidebar.success)
    gateway_wait(gateway, lambda st: st["models"]["ocr-b"]["state"] == "sleeping")
    run_ok(app)
    captions = texts(app.sidebar.caption)
    assert "asleep in host RAM" in captions and "(measured)" in captions
    assert "Sleeping pool: 1 model," in captions
    assert app.sidebar.button(key="switch_ocr-b").label == "Wake"
    run_ok(app.sidebar.button(key="switch_ocr-b").click())
    assert gateway.resident() == "ocr-b"
    assert "Waking from host RAM" in texts(app.sidebar.caption)
    assert gateway.status()["models"]["ocr-b"]["wakes"] == 1


def gateway_wait(gateway, pred, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not pred(gateway.status()):
        assert time.monotonic() < deadline, gateway.status()
        time.sleep(0.05)


def test_failed_switch_says_so_with_the_backends_last_log_lines(app, gateway):
    run_ok(app.sidebar.button(key="switch_broken").click())
    assert "broken failed to start" in texts(app.sidebar.error)
    assert FAILURE_LINE in texts(app.sidebar.code)
    assert gateway.resident() is None


def test_ocr_upload_shows_boxes_markdown_blocks_json_and_downloads(app, gateway, document_png):
    app.file_uploader(key="ocr_files").set_value(("report.png", document_png, "image/png"))
    run_ok(app)
    app.selectbox(key="ocr_model").set_value("ocr-a")
    run_ok(app.button(key="ocr_run").click())
    assert gateway.resident() == "ocr-a"  # the page switched to the chosen model first
    md = texts(app.main.markdown).lower()
    assert "quick brown fox" in md and "liquor jugs" in md
    assert "# harbour office quarterly report" in md and "## outlook" in md  # headings read as headings
    table = app.dataframe[0].value
    assert len(table) >= 3 and {"index", "category", "text", "box"} <= set(table.columns)
    assert {"Title", "Section-header", "Text"} <= set(table["category"])
    assert all(box for box in table["box"])  # every block came back with its box
    assert "quick brown fox" in " ".join(table["text"]).lower()
    assert len(app.main.get("json")) == 1
    assert [d.label for d in app.get("download_button")] == ["Markdown", "JSON", "Annotated PNG", "ZIP of all"]
    assert "report.png · page 1" in texts(app.caption)
    # Choosing a block highlights it: the picker holds the block's index and the app redraws.
    run_ok(app.selectbox(key="ocr_pick_0").set_value(1))
    assert app.selectbox(key="ocr_pick_0").value == 1


def test_ocr_modes_include_dots_mocrs_and_scene_spotting_gives_one_block_per_line(app, gateway, page_png):
    assert {"Web page layout", "Scene text (lines)", "Image to SVG"} <= set(app.selectbox(key="ocr_mode").options)
    app.file_uploader(key="ocr_files").set_value(("report.png", page_png, "image/png"))
    run_ok(app)
    app.selectbox(key="ocr_model").set_value("ocr-a")
    app.selectbox(key="ocr_mode").set_value("scene-spotting")
    run_ok(app.button(key="ocr_run").click())
    table = app.dataframe[0].value
    assert len(table) == 3 and all(box for box in table["box"])  # the page's three lines, each boxed
    assert "Scene text (lines)" in texts(app.caption)


def test_pdf_pages_are_read_one_by_one_and_navigable(app, gateway, two_page_pdf):
    app.file_uploader(key="ocr_files").set_value(("report.pdf", two_page_pdf, "application/pdf"))
    run_ok(app)
    app.selectbox(key="ocr_model").set_value("ocr-a")
    run_ok(app.button(key="ocr_run").click())
    assert "Page 1 of 2" in texts(app.main.markdown)
    assert "harbour office" in texts(app.main.markdown).lower()
    assert app.button(key="ocr_prev").disabled
    run_ok(app.button(key="ocr_next").click())
    md = texts(app.main.markdown).lower()
    assert "Page 2 of 2" in texts(app.main.markdown) and "sphinx of black quartz" in md
    assert "harbour office" not in md
    assert "report.pdf · page 2" in texts(app.caption)
    run_ok(app.button(key="ocr_prev").click())
    assert "Page 1 of 2" in texts(app.main.markdown)


def test_upload_that_is_not_a_document_is_a_message(app, gateway):
    app.file_uploader(key="ocr_files").set_value(("notes.png", b"just some text, not an image", "image/png"))
    run_ok(app)
    run_ok(app.button(key="ocr_run").click())
    err = texts(app.main.error)
    assert "notes.png cannot be used" in err and "not an image or PDF" in err
    assert gateway.resident() is None  # nothing was started for a bad file


def test_upload_over_the_size_limit_is_a_message(gateway, page_png, monkeypatch):
    monkeypatch.setenv("VLMSWAP_UI_MAX_UPLOAD_MB", "0.001")
    at = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=60))
    at.file_uploader(key="ocr_files").set_value(("report.png", page_png, "image/png"))
    run_ok(at)
    run_ok(at.button(key="ocr_run").click())
    assert "over the upload limit" in texts(at.main.error)


def test_gateway_down_is_a_message_with_the_command_that_starts_it(monkeypatch):
    monkeypatch.setenv("VLMSWAP_GATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    at = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=30))
    assert "not reachable" in texts(at.sidebar.error) and "vlmswap serve" in texts(at.sidebar.error)
    assert "not reachable" in texts(at.main.error)
    at.switch_page("chat_page.py")
    run_ok(at)
    assert "not reachable" in texts(at.main.error)


def test_chat_turn_switches_model_then_streams_the_answer(app, gateway, page_png):
    app.switch_page("chat_page.py")
    run_ok(app)
    run_ok(app.selectbox(key="chat_model").set_value("tiny-chat"))
    app.chat_input(key="chat_input").set_value("What is written here?").upload("page.png", page_png, "image/png")
    run_ok(app)
    assert gateway.resident() == "tiny-chat"
    turns = [(m.name, texts(m.markdown)) for m in app.chat_message]
    assert turns[0] == ("user", "What is written here?")
    assert turns[1][0] == "assistant" and turns[1][1].strip()  # the tiny model's (random) tokens
    assert len(app.chat_message[0].image) == 1  # the attached page is shown in the turn
    # A second turn goes to the resident model without a switch; clear empties the history.
    app.chat_input(key="chat_input").set_value("And now?")
    run_ok(app)
    assert [m.name for m in app.chat_message] == ["user", "assistant", "user", "assistant"]
    run_ok(app.button(key="chat_clear").click())
    assert len(app.chat_message) == 0


def test_chat_with_a_model_that_fails_to_start_says_so(app, gateway):
    app.switch_page("chat_page.py")
    run_ok(app)
    run_ok(app.selectbox(key="chat_model").set_value("broken"))
    app.chat_input(key="chat_input").set_value("Hello?")
    run_ok(app)
    err = texts(app.main.error)
    assert "broken failed to start" in err
    assert gateway.resident() is None


def test_ocr_with_a_model_whose_output_is_unusable_says_so(app, gateway, page_png):
    """The tiny random-weight model answers noise: the page says its layout was unusable, text salvaged."""
    app.file_uploader(key="ocr_files").set_value(("report.png", page_png, "image/png"))
    run_ok(app)
    app.selectbox(key="ocr_model").set_value("tiny-chat")
    app.selectbox(key="ocr_mode").set_value("layout")
    run_ok(app.button(key="ocr_run").click())
    warning = texts(app.main.warning)
    assert "unusable as a layout; only its plain text was salvaged" in warning and "fallback_text" in warning


def test_chat_attachment_that_is_not_an_image_is_a_message(app, gateway):
    app.switch_page("chat_page.py")
    run_ok(app)
    app.chat_input(key="chat_input").set_value("What is this?").upload("fake.png", b"%!PS not a png", "image/png")
    run_ok(app)
    assert "Could not attach the image" in texts(app.main.error)
    assert gateway.resident() is None  # nothing was sent, no model started
