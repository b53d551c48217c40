"""The web UI in a real browser: Debian's Chromium driven by Playwright (never `playwright install`).

Set VLMSWAP_UPDATE_SCREENSHOT=1 to refresh docs/img/ocr-page.png (the README's screenshot),
docs/img/ui-ru.png and docs/img/sidebar-ru.png (the Russian interface, docs/ui.md).
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.ui.helpers import ROOT, click_keyed

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make system-deps)"),
]


def coloured_pixels(png: bytes) -> int:
    """Pixels that are clearly coloured: the page itself is black text on white."""
    px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return int(((px.max(axis=2) - px.min(axis=2)) > 60).sum())


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1080})
        finally:
            browser.close()


# What the page says, per language (the Russian written out, not looked up, so a wrong table fails).
SAYS = {
    "en": {
        "heading": "OCR documents",
        "run": "Run OCR",
        "caption": "report.png · page 1",
        "blocks": "Blocks",
        "switching": "Switching to ocr-b",
        "progress": r"(Stopping the resident model|Starting|Loading) · \d+\.\d s",
        "ready": r"ocr-b is ready \(switch took",
        "buttons": ["Resident", "Sleep", "Unload"],
        "shot": "ocr-page.png",
    },
    "ru": {
        "heading": "Распознавание документов",
        "run": "Распознать",
        "caption": "report.png · страница 1",
        "blocks": "Блоки",
        "switching": "Переключение на ocr-b",
        "progress": r"(Остановка активной модели|Запуск|Загрузка) · \d+,\d с",
        "ready": r"Модель ocr-b готова \(переключение заняло",
        "buttons": ["Активна", "Усыпить", "Выгрузить"],
        "shot": "ui-ru.png",
    },
}
CUT_LABELS = """() => [...document.querySelectorAll(
    "section[data-testid='stSidebar'] [class*='st-key-switch_'] button,"
    + "section[data-testid='stSidebar'] [class*='st-key-sleep_'] button,"
    + "section[data-testid='stSidebar'] [class*='st-key-unload_'] button")]
  .flatMap(b => [b, ...b.querySelectorAll('*')])
  .filter(e => getComputedStyle(e).overflow === 'hidden' && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.textContent)"""  # Streamlit cuts a label that does not fit with an ellipsis: hidden overflow


@pytest.mark.parametrize("ui_server", ["en", "ru"], indirect=True)
def test_ocr_a_page_then_switch_model_in_the_browser(ui_server, gateway, browser_page, document_png, tmp_path, request):
    lang = request.node.callspec.params["ui_server"]
    says = SAYS[lang]
    page = browser_page
    upload = tmp_path / "report.png"
    upload.write_bytes(document_png)
    page.goto(ui_server)
    page.get_by_role("heading", name=says["heading"]).wait_for(timeout=60_000)
    page.locator("section[data-testid='stSidebar']").get_by_text("ocr-b").first.wait_for()

    # Upload, run, and wait for the recognised text in the rendered Markdown.
    page.locator("input[type=file]").first.set_input_files(str(upload))
    page.get_by_text("report.png").first.wait_for()
    page.get_by_role("button", name=says["run"]).click()
    page.get_by_text(re.compile("quick brown fox", re.I)).first.wait_for(timeout=180_000)
    page.get_by_text(re.compile("liquor jugs", re.I)).first.wait_for()
    page.get_by_text(says["caption"]).wait_for()
    assert gateway.resident() == "ocr-a"

    # The page image shown carries the boxes: fetch it as the browser did and look for colour.
    img = page.locator("[data-testid='stImage'] img").first
    img.wait_for()
    src = img.get_attribute("src")
    shown = page.request.get(src if src.startswith("http") else ui_server + src).body()
    assert coloured_pixels(shown) > 500
    assert coloured_pixels(document_png) == 0
    page.wait_for_timeout(500)  # let the last deltas paint before the screenshot
    page.screenshot(path=str(tmp_path / says["shot"]), full_page=True)

    # Choosing a block in the Blocks tab highlights it on the page (thick, filled box).
    page.get_by_role("tab", name=says["blocks"]).click()
    page.locator(".st-key-ocr_pick_0").click()
    page.get_by_role("option", name=re.compile(r"^2: Text")).click()
    page.wait_for_function(
        "old => { const i = document.querySelector(\"[data-testid='stImage'] img\");"
        " return i && i.getAttribute('src') !== old; }",
        arg=src,
        timeout=30_000,
    )
    src2 = img.get_attribute("src")
    highlighted = page.request.get(src2 if src2.startswith("http") else ui_server + src2).body()
    assert coloured_pixels(highlighted) > coloured_pixels(shown) + 2000
    page.screenshot(path=str(tmp_path / "highlight.png"), full_page=True)

    # Switch to the other model from the sidebar and watch the progress, then the notice.
    click_keyed(page, "switch_ocr-b")
    page.get_by_text(says["switching"]).first.wait_for(timeout=30_000)
    progress = page.get_by_text(re.compile(says["progress"])).first
    progress.wait_for(timeout=60_000)
    progress.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "switch-progress.png"))
    page.get_by_text(re.compile(says["ready"])).wait_for(timeout=180_000)
    assert gateway.resident() == "ocr-b"

    # ocr-b (sleep mode) is resident: its card has all three buttons, none of their labels cut ("Sw…").
    card = page.locator("section[data-testid='stSidebar'] [class*='st-key-unload_ocr-b']")
    card.wait_for(timeout=30_000)
    card.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    for key, label in zip(("switch", "sleep", "unload"), says["buttons"]):
        assert page.locator(f".st-key-{key}_ocr-b button p").first.inner_text().strip() == label
    assert page.evaluate(CUT_LABELS) == []
    sidebar = page.locator("section[data-testid='stSidebar']")
    sidebar.screenshot(path=str(tmp_path / "sidebar.png"))
    if os.environ.get("VLMSWAP_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / says["shot"], ROOT / "docs" / "img" / says["shot"])
        if lang == "ru":
            shutil.copy(tmp_path / "sidebar.png", ROOT / "docs" / "img" / "sidebar-ru.png")


@pytest.mark.parametrize("ui_server", [""], indirect=True)
def test_without_vlmswap_lang_the_browsers_language_is_used(ui_server, gateway):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for locale, heading in (("ru-RU", "Распознавание документов"), ("en-GB", "OCR documents")):
                page = browser.new_context(locale=locale).new_page()
                page.goto(ui_server)
                page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
                page.close()
        finally:
            browser.close()


def test_pdf_job_shows_pages_as_they_arrive_and_cancel_stops_it(ui_server, gateway, browser_page, tmp_path):
    """One upload is one job: the progress bar and each page appear while it runs; Cancel ends it,
    the pages read are kept, and the recent jobs list reopens them."""
    import httpx

    from tests.ui.helpers import PAGE_ONE, render_page

    pages = [render_page([f"Page {n} of the long scan.", *PAGE_ONE[1:]]) for n in range(1, 21)]
    upload = tmp_path / "long.pdf"
    pages[0].save(upload, format="PDF", save_all=True, append_images=pages[1:], resolution=150)
    page = browser_page
    page.goto(ui_server)
    page.get_by_role("heading", name="OCR documents").wait_for(timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(upload))
    page.get_by_text("long.pdf").first.wait_for()
    page.get_by_role("button", name="Run OCR").click()

    page.get_by_text(re.compile(r"of 20 pages · (queued|running)")).first.wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"✓ long\.pdf page \d+")).first.wait_for(timeout=120_000)
    page.get_by_text(re.compile(r"about \d+ (s|min) left")).first.wait_for(timeout=30_000)
    page.get_by_text("Latest: long.pdf page").first.wait_for()
    page.screenshot(path=str(tmp_path / "job-running.png"), full_page=True)
    page.get_by_role("button", name="Cancel").click()
    page.get_by_text(re.compile(r"Job cancelled: showing the \d+ pages read")).wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "job-cancelled.png"), full_page=True)

    jobs = httpx.get(f"{gateway.url}/api/jobs", trust_env=False).json()["data"]
    job = next(j for j in jobs if j["source"] == "long.pdf")
    assert job["state"] == "cancelled" and 1 <= job["pages_done"] < 20
    page.get_by_text(re.compile(r"long\.pdf · page \d+ ·")).wait_for()  # the first page read (two are in flight)

    # Reopen it from the recent jobs list after a reload (a new browser session).
    page.reload()
    page.get_by_text(re.compile(r"Recent jobs \(\d+\)")).click()
    click_keyed(page, f"ocr_open_{job['id']}")
    page.get_by_text(re.compile(r"long\.pdf · page \d+ ·")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Page ?\d+ of the long scan")).first.wait_for()
