"""A headless Chromium loads the Space, runs an example and sees the overlays (screenshot saved)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_app_server import serve_tiny_model

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning"),  # inside gradio
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Chromium missing: apt-get install -y chromium (CI does)"
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve_tiny_model(tmp_path_factory) as url:
        yield url


def test_example_click_shows_confidence_overlays_and_text(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot = tmp_path / "dermxai_space.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(server, wait_until="networkidle")
            expect(page.get_by_text("not a medical device")).to_be_visible(timeout=30_000)
            page.locator("button", has_text="SynthDerm").first.click()
            overlays = page.locator("#overlays img")
            expect(overlays).to_have_count(3, timeout=120_000)
            expect(page.locator("#explanation-text")).not_to_be_empty(timeout=10_000)
            expect(page.get_by_text("Calibrated confidence")).to_be_visible()
            expect(page.locator("#mask-scores")).to_contain_text("IoU with mask")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")
