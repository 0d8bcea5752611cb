"""The built site, opened in a real browser: math renders, figures load, search finds a method,
and every local link of every page points to an existing file and anchor.

Needs the ``docs`` extra (Sphinx, selenium, ...) and Debian's ``chromium`` and
``chromium-driver``. Without them the tests skip with the reason; ``nox -s docs`` sets
``NORMSPEC_REQUIRE_BROWSER=1``, which turns that skip into a failure. The site is the one in
``NORMSPEC_DOCS_HTML`` (what ``nox -s docs`` just built) or, when that is unset, a fresh build
in a temporary folder. Screenshots go to ``reports/screenshots/`` (``NORMSPEC_SCREENSHOTS``).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRE = os.environ.get("NORMSPEC_REQUIRE_BROWSER") == "1"
SHOTS = Path(os.environ.get("NORMSPEC_SCREENSHOTS", ROOT / "reports" / "screenshots"))
METHOD_PAGE = "spec/methods/group_norm.html"


def _unavailable(reason: str) -> None:
    if REQUIRE:
        pytest.fail(f"NORMSPEC_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def _chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)
    if not browser or not driver:
        _unavailable("Debian's chromium and chromium-driver are not installed "
                     "(apt-get install -y chromium chromium-driver)")
    assert browser
    assert driver
    return browser, driver


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built HTML site."""
    for module in ("sphinx", "myst_parser", "selenium"):
        if importlib.util.find_spec(module) is None:
            _unavailable(f"the docs extra is not installed ({module} is missing; "
                         "pip install -e '.[docs]', or run `nox -s docs`)")
    _chromium()
    given = os.environ.get("NORMSPEC_DOCS_HTML")
    if given:
        html = Path(given)
        if not (html / "docs" / "index.html").is_file():
            pytest.fail(f"NORMSPEC_DOCS_HTML={given} holds no built site (docs/index.html)")
        return html
    html = tmp_path_factory.mktemp("site") / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
         "-d", str(html.parent / "doctrees"), "-c", "docs", ".", str(html)],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert build.returncode == 0, build.stdout + build.stderr
    return html


@pytest.fixture(scope="session")
def base_url(site: Path) -> Iterator[str]:
    """The site served over HTTP on localhost (as a web server would, fonts and fetches
    included)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def browser(site: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    profile = site.parent / f"chromium-profile-{os.getpid()}"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(60)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(browser: Any, script: str, timeout: float = 30.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(
        lambda b: b.execute_script(script))


def _shot(browser: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def test_method_page_renders_its_math(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/{METHOD_PAGE}")
    rendered = _wait(browser, "return document.querySelectorAll('mjx-container').length")
    assert rendered >= 10, f"only {rendered} formulas rendered by MathJax"
    _wait(browser, "return window.MathJax && MathJax.startup && "
                   "MathJax.startup.promise.then(() => true)")
    text = browser.execute_script("return document.querySelector('article').innerText")
    assert "$$" not in text, "raw $$ left in the rendered page"
    errors = browser.execute_script("return document.querySelectorAll('mjx-merror').length")
    assert errors == 0, f"{errors} MathJax errors on {METHOD_PAGE}"
    numbered = browser.execute_script(
        "return document.querySelectorAll('div.math span.eqno, .math .eqno').length")
    assert numbered >= 5, "numbered equations lost their numbers"
    _shot(browser, "method-page-top")
    figure = browser.find_element("css selector", "figure img")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", figure)
    _shot(browser, "method-page-figure")


def test_every_method_figure_loads(browser: Any, base_url: str, site: Path) -> None:
    pages = sorted((site / "spec" / "methods").glob("*.html"))
    assert len(pages) >= 7
    for page in pages:
        browser.get(f"{base_url}/spec/methods/{page.name}")
        images = browser.execute_script(
            "return Array.from(document.querySelectorAll('figure img')).map("
            "i => [i.src, i.complete, i.naturalWidth])")
        note = browser.execute_script(
            "return document.body.innerText.includes('No figure of the reduced set')")
        assert images or note, f"{page.name}: neither a figure nor a reason for its absence"
        for src, complete, width in images:
            assert complete, f"{page.name}: figure {src} did not finish loading"
            assert width > 0, f"{page.name}: figure {src} did not load (naturalWidth 0)"


def test_search_finds_a_method(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/search.html?q=group_norm")
    _wait(browser, "return document.querySelectorAll('#search-results li').length > 0")
    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('#search-results li a'))"
        ".map(a => a.getAttribute('href'))")
    assert any("spec/methods/group_norm" in href for href in links), links
    _shot(browser, "search-group_norm")


def test_overview_and_mapping_pages_render(browser: Any, base_url: str) -> None:
    browser.get(f"{base_url}/docs/index.html")
    rows = browser.execute_script("return document.querySelectorAll('table tbody tr').length")
    assert rows >= 7
    _shot(browser, "overview")
    browser.get(f"{base_url}/docs/framework-mapping.html")
    tabs = browser.execute_script("return document.querySelectorAll('.sd-tab-set label').length")
    assert tabs >= 4
    _shot(browser, "framework-mapping")


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "a" and values.get("name"):
            self.ids.add(values["name"] or "")
        for key in ("href", "src"):
            value = values.get(key)
            if value and (tag in ("a", "img", "script") or (tag == "link" and key == "href")):
                self.hrefs.append(value)


@functools.cache
def _parse(path: Path) -> _Links:
    links = _Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_internal_links_resolve(site: Path) -> None:
    pages = [p for p in site.rglob("*.html") if "_static" not in p.parts]
    assert len(pages) >= 20
    broken = []
    for page in pages:
        for href in _parse(page).hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            target_path, fragment = parts.path, parts.fragment
            target = (page.parent / unquote(target_path)).resolve() if target_path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {href} (no such file)")
            elif fragment and target.suffix == ".html" and unquote(fragment) not in _parse(
                    target).ids:
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, f"{len(broken)} broken local links:\n" + "\n".join(broken[:40])
