"""The web page in a real browser: Debian's chromium, headless, driven by Playwright, against
uvicorn on 127.0.0.1. Playwright's own browser downloads are never used.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``); without it the test is skipped
with that message, or fails when GENREC_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest
import uvicorn

from genrec.serving.app import create_app
from genrec.serving.bundle import load_bundle

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        msg = ("Debian chromium is not installed (no /usr/bin/chromium); install it with "
               "`sudo apt-get install -y chromium` (make test does this)")
        if os.environ.get("GENREC_REQUIRE_BROWSER") == "1":
            pytest.fail(msg + " (GENREC_REQUIRE_BROWSER=1)")
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(ease_run):
    """uvicorn serving the EASE shop run on a free 127.0.0.1 port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no race for the port
    app = create_app(bundle=load_bundle(ease_run, search="tfidf"))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    srv.should_exit = True
    thread.join(10)
    sock.close()


def test_search_build_a_history_and_get_recommendations(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(server)

    health, status = page.locator("#health"), page.locator("#recs-status")
    recs, history = page.locator("#recs li"), page.locator("#history li")
    page.wait_for_function("document.querySelector('#health').textContent.includes('shop')")
    assert health.text_content().startswith("ease on shop · 40 items")
    # no history yet: the popular fallback, and the page says so
    page.wait_for_function("document.querySelectorAll('#recs li').length === 10")
    assert status.text_content().startswith("popular items (empty history) · answered by ease")

    # a blank search is refused on the page, a real one lists exactly the mascara items
    page.click("#search-button")
    assert "type something" in page.locator("#search-status").text_content()
    page.fill("#query", "mascara")
    page.press("#query", "Enter")
    page.wait_for_function("document.querySelectorAll('#search-results li').length === 5")
    titles = page.locator("#search-results .title").all_text_contents()
    assert sorted(titles) == sorted(f"Red Mascara {i}" for i in (2, 6, 10, 14, 18))
    assert "tfidf" in page.locator("#search-status").text_content()
    # sku02 has a local image: it is shown and actually loaded
    img = page.locator('#search-results li[data-item-id="sku02"] img')
    page.wait_for_function("(() => { const i = document.querySelector("
                           "'#search-results li[data-item-id=\"sku02\"] img');"
                           " return i && i.complete && i.naturalWidth === 1; })()")
    assert img.count() == 1

    # click two results into the history: personalised recommendations, all red make-up
    page.locator("#search-results li").nth(0).click()
    page.locator("#search-results li").nth(1).click()
    picked = history.evaluate_all("els => els.map(e => e.dataset.itemId)")
    assert len(picked) == 2
    page.wait_for_selector(f'#recs[data-history="{",".join(picked)}"]', state="attached")
    assert status.text_content().startswith("answered by ease in ")
    assert status.text_content().endswith(" ms")
    shown = recs.evaluate_all("els => els.map(e => e.dataset.itemId)")
    assert len(shown) == 10 and not set(picked) & set(shown)
    assert all(t.startswith("Red ") for t in page.locator("#recs .title").all_text_contents())

    # clicking a recommendation extends the history; x removes an entry again
    recs.nth(0).click()
    picked.append(shown[0])
    page.wait_for_selector(f'#recs[data-history="{",".join(picked)}"]', state="attached")
    assert history.count() == 3 and shown[0] not in recs.evaluate_all(
        "els => els.map(e => e.dataset.itemId)")
    history.nth(0).locator(".remove").click()
    page.wait_for_selector(f'#recs[data-history="{",".join(picked[1:])}"]', state="attached")
    assert history.count() == 2

    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert errors == []
    page.close()
