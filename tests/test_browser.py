"""End to end: `streamlit run` on a free port, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clipsearch.loader import LoadOptions, PhotoLoader

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = ROOT / "test-output"
# Chromium flags for a closed network: no background calls home, no sandbox as root.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium); CI installs it and never skips this",
)


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer on {url}")


@pytest.fixture
def streamlit_server(
    cli_env: dict[str, str], encoder, open_test_index, sample_photos: Path, free_port: int, tmp_path: Path
):
    PhotoLoader(open_test_index(), encoder, LoadOptions(), show_bar=False).index_folder(sample_photos)
    port = free_port
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "streamlit.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=cli_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_healthy(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_typing_a_query_and_enter_fills_the_gallery(streamlit_server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(streamlit_server)
        box = page.get_by_label("Describe the photo you are looking for, then press Enter")
        expect(box).to_be_visible(timeout=120_000)
        box.fill("a cat")
        box.press("Enter")
        gallery = page.locator('[data-testid="stImage"] img')
        expect(gallery).to_have_count(12, timeout=120_000)
        expect(page.get_by_text("#1 · ", exact=False)).to_be_visible()
        page.wait_for_function("() => [...document.images].every(img => img.complete && img.naturalWidth > 0)")
        assert "q=a+cat" in page.url or "q=a%20cat" in page.url
        page.screenshot(path=str(OUTPUT / "browser-search.png"), full_page=True)

        page.get_by_role("button", name="Open").first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("What is in this photo?")).to_be_visible(timeout=60_000)
        expect(dialog.locator('[data-testid="stProgress"]')).to_have_count(5, timeout=60_000)
        page.screenshot(path=str(OUTPUT / "browser-open.png"))
        browser.close()
