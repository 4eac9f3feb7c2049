"""The web page in a real browser: Debian's chromium, headless, driven by Playwright, against
uvicorn on 127.0.0.1. Playwright's own browser downloads are never used.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``); without it the test is skipped
with that message, or fails when GENREC_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from contextlib import contextmanager

import pytest
import uvicorn

from genrec.runs import make_config, train
from genrec.serving.app import create_app
from genrec.serving.bundle import load_bundle

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth"


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


@contextmanager
def serving(app):
    """uvicorn serving ``app`` on a free 127.0.0.1 port, in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound before uvicorn starts: no race for the port
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def server(ease_run):
    """The EASE shop run."""
    with serving(create_app(bundle=load_bundle(ease_run, search="tfidf"))) as url:
        yield url


def open_page(browser, server, path="/", width=1280):
    """A new page on ``server``; the list it returns collects page errors, failed requests,
    4xx/5xx answers to anything but the page's API calls (a favicon, a script), and every
    request that would leave this machine (aborted: the page must work offline)."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"{r.status}: {r.url}")
            if r.status >= 400 and r.request.resource_type != "fetch" else None)

    def offline(route):
        if route.request.url.startswith((server, "data:")):
            return route.continue_()
        problems.append(f"left the machine: {route.request.url}")
        return route.abort()

    page.route("**/*", offline)
    page.goto(server + path)
    return page, problems


def wait_for_popular(page):
    page.wait_for_function("document.querySelectorAll('#recs li').length === 10")


def test_search_build_a_history_and_get_recommendations(browser, server, tmp_path):
    page, errors = open_page(browser, server)

    health, status = page.locator("#health"), page.locator("#recs-status")
    recs, history = page.locator("#recs li"), page.locator("#history li")
    page.wait_for_function("document.querySelector('#health').textContent.includes('shop')")
    assert health.text_content().startswith("ease on shop · 40 items")
    # no history yet: the popular fallback, and the page says so
    page.wait_for_function("document.querySelectorAll('#recs li').length === 10")
    assert status.text_content().startswith("popular items (empty history) · answered by ease")
    # popularity counts read as whole numbers ("sku05 · 12", not "12.000")
    assert all(re.fullmatch(r"sku\d\d · \d+", m)
               for m in page.locator("#recs .meta").all_text_contents())
    # the search placeholder names the most popular item's title, not a fixed word
    top_title = page.locator("#recs .title").first.text_content()
    assert page.get_attribute("#query", "placeholder") == f"search items, e.g. {top_title}"
    assert page.get_attribute("#query", "maxlength") == "2000"

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


def test_a_known_user_id_gets_their_recommendations_and_an_unknown_one_a_short_message(
        browser, server):
    page, errors = open_page(browser, server)
    status = page.locator("#recs-status")
    wait_for_popular(page)
    assert page.get_attribute("#user-id", "placeholder") == "or a known user id, e.g. u00"
    # odd users only buy blue bath products: so do their recommendations
    page.fill("#user-id", "u01")
    page.press("#user-id", "Enter")
    page.wait_for_selector('#recs[data-user="u01"]', state="attached")
    assert status.text_content().startswith("user u01 · answered by ease in ")
    assert all(t.startswith("Blue ") for t in page.locator("#recs .title").all_text_contents())
    # picking an item starts a history instead: the user id goes
    page.locator("#recs li").nth(0).click()
    page.wait_for_selector('#recs[data-user=""]', state="attached")
    assert page.input_value("#user-id") == "" and page.locator("#history li").count() == 1

    # an unknown user: the server's one-line message, in place of the (now cleared) list
    page.fill("#user-id", "ghost")
    page.click("#user-button")
    page.wait_for_selector("#recs-status.error")
    assert status.text_content().startswith("unknown user 'ghost' in dataset 'shop'")
    assert page.locator("#recs li").count() == 0
    # a 200-character id (the box's limit) wraps inside its card
    page.fill("#user-id", "g" * 300)
    assert page.input_value("#user-id") == "g" * 200
    page.click("#user-button")
    page.wait_for_function("document.querySelector('#recs-status').textContent.includes('ggg')")
    assert page.evaluate(NO_OVERFLOW)
    # Clear goes back to the empty history: popular items
    page.click("#clear-history")
    page.wait_for_selector("#recs-status.fallback")
    assert errors == []
    page.close()


@pytest.mark.parametrize("width", [1280, 400])
def test_a_2500_character_query_is_cut_with_a_note_in_place_and_nothing_overflows(
        browser, server, width):
    page, errors = open_page(browser, server, width=width)
    wait_for_popular(page)
    # typing stops at 2,000 characters; a script (or a paste into an old browser) can go past it
    page.evaluate("document.querySelector('#query').value = 'mascara '.repeat(320)")
    page.press("#query", "Enter")
    page.wait_for_function("document.querySelector('#search-status').textContent"
                           ".includes('cut to its first')")
    message = page.locator("#search-status").text_content()
    assert "the query was cut to its first 2,000 of 2,559 characters" in message  # trimmed
    assert page.locator("#search-results li").count() > 0  # answered, not refused
    assert page.evaluate(NO_OVERFLOW)
    assert errors == []
    page.close()


def test_a_result_can_be_picked_with_the_keyboard(browser, server):
    page, errors = open_page(browser, server)
    wait_for_popular(page)
    page.fill("#query", "mascara")
    page.press("#query", "Enter")
    page.wait_for_function("document.querySelectorAll('#search-results li').length === 5")
    first = page.locator("#search-results li").nth(0).get_attribute("data-item-id")
    second = page.locator("#search-results li").nth(1).get_attribute("data-item-id")
    page.keyboard.press("Tab")  # from the search box: the Search button, then the first result
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('li').dataset.itemId") == first
    page.keyboard.press("Enter")
    page.wait_for_selector(f'#recs[data-history="{first}"]', state="attached")
    page.locator("#search-results li button").nth(1).focus()
    page.keyboard.press(" ")
    page.wait_for_selector(f'#recs[data-history="{first},{second}"]', state="attached")
    assert errors == []
    page.close()


def test_the_api_docs_render_offline(browser, server):
    page, errors = open_page(browser, server, "/docs")
    page.wait_for_selector(".opblock")  # Swagger UI drew the operations from /openapi.json
    paths = page.locator(".opblock-summary-path").all_text_contents()
    assert {"/recommend", "/search", "/health"} <= {p.replace("\u200b", "") for p in paths}
    assert errors == []  # nothing from a CDN, no 404
    page.close()


@pytest.mark.integration
def test_on_movielens_the_page_suggests_a_movie_and_serves_user_1(browser, shared_data, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("GENREC_DATA", str(shared_data("ml-100k").parent))
    train(make_config("ease", ["data.name=ml-100k", "eval.ks=[10]"]), tmp_path / "run")
    with serving(create_app(tmp_path / "run", search="tfidf")) as url:
        page, errors = open_page(browser, url)
        wait_for_popular(page)
        assert page.locator("#recs .title").first.text_content() == "Star Wars (1977)"
        assert page.locator("#recs .meta").first.text_content() == "50 · 583"
        placeholder = page.get_attribute("#query", "placeholder")
        assert placeholder == "search items, e.g. Star Wars" and "lipstick" not in placeholder
        page.fill("#user-id", "1")
        page.press("#user-id", "Enter")
        page.wait_for_selector('#recs[data-user="1"]', state="attached")
        assert page.locator("#recs li").count() == 10
        assert errors == []
        page.close()
