"""Browsable docs (issue 5): the Swagger UI the app serves at /docs/, driven in a real headless
Chromium against a real `octopus-cards serve` on 127.0.0.1.

The page must load from the app alone (no CDN: every request the browser makes goes to the
server under test), list every operation of the OpenAPI document, and make the bearer scheme
usable: log in with "Try it out", paste the access token into "Authorize", and read the
currencies through the page.

Uses Debian's Chromium and its driver (/usr/bin/chromium, /usr/bin/chromedriver) through
selenium; nothing is downloaded. Without them the test is skipped; .ci/run installs them in CI.
"""

import json
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from support.live_server import LiveServer, cli_json

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]

pytestmark = [
    pytest.mark.e2e,
    # Skipped before any fixture runs (no server is started for nothing).
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"Chromium is not installed ({', '.join(MISSING)} missing): "
        "apt-get install chromium chromium-driver (.ci/run does this in CI)",
    ),
]

# The network is closed: these keep Chromium from reaching out (and failing lookups) on its own.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--window-size=1280,1400",
]
WAIT = 15.0
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(env, tmp_path_factory):
    with LiveServer(env, tmp_path_factory.mktemp("browser-server-logs"), name="docs") as live:
        yield live


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium under chromedriver, with a fresh profile; quit (both processes) after."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit driver path: selenium never runs Selenium Manager (which would download).
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT)
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


# -- page helpers -----------------------------------------------------------------------------


def wait_for(driver, condition, message, timeout=WAIT):
    return WebDriverWait(driver, timeout).until(lambda _: condition(), message)


def one(context, css):
    return context.find_element(By.CSS_SELECTOR, css)


def text_of(element):
    """All text under an element, visible or scrolled away (`.text` is only what is shown)."""
    return element.get_attribute("textContent")


def opblock(driver, method, path):
    """The operation block of `METHOD path`."""
    return driver.find_element(
        By.XPATH,
        f"//div[contains(concat(' ', normalize-space(@class), ' '), ' opblock-{method.lower()} ')]"
        f"[.//*[contains(@class, 'opblock-summary-path') and @data-path='{path}']]",
    )


def open_try_out(driver, method, path):
    """Expand the operation and press "Try it out"; the block."""
    block = opblock(driver, method, path)
    one(block, ".opblock-summary-control").click()
    try_out = wait_for(
        driver,
        lambda: block.find_elements(By.CSS_SELECTOR, "button.try-out__btn"),
        f"no Try it out button on {method} {path}",
    )[0]
    try_out.click()
    wait_for(
        driver, lambda: block.find_elements(By.CSS_SELECTOR, "button.execute"), f"no Execute button on {method} {path}"
    )
    return block


def execute(driver, block):
    """Clear any earlier response, press Execute, wait for the live response;
    (status, body text, curl command, request URL)."""
    for clear in block.find_elements(By.CSS_SELECTOR, "button.btn-clear"):
        clear.click()
    wait_for(
        driver,
        lambda: not block.find_elements(By.CSS_SELECTOR, ".live-responses-table"),
        "the earlier response was not cleared",
    )
    one(block, "button.execute").click()

    def rendered():
        tables = block.find_elements(By.CSS_SELECTOR, ".live-responses-table")
        if not tables:
            return None
        status = tables[0].find_elements(By.CSS_SELECTOR, ".response .response-col_status")
        return tables[0] if status and text_of(status[0]).strip() else None

    table = wait_for(driver, rendered, "no live response rendered")
    status = text_of(one(table, ".response .response-col_status")).strip()
    body = text_of(one(table, ".response .response-col_description .highlight-code pre"))
    curl = text_of(one(block, ".curl-command"))
    request_url = text_of(one(block, ".request-url pre")).strip()
    return int(status), body, curl, request_url


def documented_operations(spec):
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item if method in METHODS}


def requested_urls(driver, origin):
    """Every URL the pages of `origin` asked for (Chrome's network log, drained by the call).

    Chromium's own pages (its new tab page at start-up) are left out: the network log holds
    their requests too, but they are no part of the page under test.
    """
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            if same_origin(params.get("documentURL", ""), origin):
                urls.append(params["request"]["url"])
    return urls


def same_origin(url, origin):
    return urlsplit(url)[:2] == urlsplit(origin)[:2]


# -- the test ---------------------------------------------------------------------------------


def test_swagger_ui_lists_the_api_and_the_bearer_scheme_works_from_the_page(server, env, browser, tmp_path):
    client = cli_json(env, "client", "create", "--name", f"browser-{secrets.token_hex(4)}", "--json")
    with server.client() as http:
        spec = http.get("/openapi.json").json()

    # The page loads and Swagger UI renders the document the app serves.
    browser.get(server.url("/docs/"))
    wait_for(browser, lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock"), "Swagger UI did not render")
    title = text_of(one(browser, ".information-container .title"))
    assert spec["info"]["title"] in title and spec["info"]["version"] in title, title

    # It lists every operation of the document, the auth ones included.
    listed = browser.execute_script(
        "return [...document.querySelectorAll('.opblock')].map(block => ["
        " block.querySelector('.opblock-summary-method').textContent,"
        " block.querySelector('.opblock-summary-path').getAttribute('data-path')])"
    )
    listed = {(method.strip().upper(), path) for method, path in listed}
    for operation in [
        ("POST", "/auth/login"),
        ("POST", "/auth/refresh"),
        ("POST", "/auth/logout"),
        ("GET", "/api/v1/countries"),
        ("GET", "/api/v1/countries/{country_id}"),
        ("GET", "/api/v1/currencies"),
        ("GET", "/api/v1/categories"),
        ("GET", "/api/v1/subcategories"),
    ]:
        assert operation in listed, f"{operation} not listed; listed: {sorted(listed)}"
    assert listed == documented_operations(spec)

    # The bearer scheme: an "Authorize" button, and a lock on the operations that need it only.
    authorize = one(browser, ".scheme-container button.btn.authorize")
    assert text_of(authorize).strip() == "Authorize"
    assert "unlocked" in authorize.get_attribute("class")
    assert opblock(browser, "get", "/api/v1/currencies").find_elements(By.CSS_SELECTOR, ".authorization__btn")
    assert not opblock(browser, "post", "/auth/login").find_elements(By.CSS_SELECTOR, ".authorization__btn")
    browser.save_screenshot(str(tmp_path / "docs-loaded.png"))

    # Log in through the page: Try it out on POST /auth/login with the client's credentials.
    login = open_try_out(browser, "post", "/auth/login")
    body = one(login, "textarea.body-param__text")
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.DELETE)
    body.send_keys(json.dumps({"username": client["api_key"], "password": client["api_secret"]}))
    status, text, _, request_url = execute(browser, login)
    assert status == 200, text
    assert request_url == server.url("/auth/login")
    tokens = json.loads(text)["data"]
    assert tokens["client_id"] == client["client_id"]
    access_token = tokens["access_token"]
    assert access_token.startswith("eyJ")

    # Before authorizing, the page sends no token: 401.
    currencies = open_try_out(browser, "get", "/api/v1/currencies")
    status, text, curl, _ = execute(browser, currencies)
    assert status == 401, text
    assert "Authorization" not in curl

    # Authorize: paste the access token into bearerAuth.
    authorize.click()
    dialog = wait_for(
        browser,
        lambda: browser.find_elements(By.CSS_SELECTOR, ".dialog-ux .modal-ux"),
        "the Authorize dialog did not open",
    )[0]
    scheme = next(
        container
        for container in dialog.find_elements(By.CSS_SELECTOR, ".auth-container")
        if "bearerAuth" in text_of(container)
    )
    assert "http, Bearer" in text_of(scheme), text_of(scheme)
    one(scheme, "input").send_keys(access_token)
    one(scheme, "button.authorize").click()
    wait_for(browser, lambda: "Authorized" in text_of(scheme), "bearerAuth not authorized")
    assert [button for button in scheme.find_elements(By.TAG_NAME, "button") if text_of(button) == "Logout"]
    browser.save_screenshot(str(tmp_path / "authorized.png"))
    one(dialog, "button.btn-done").click()
    wait_for(browser, lambda: not browser.find_elements(By.CSS_SELECTOR, ".dialog-ux"), "dialog still open")
    assert "locked" in authorize.get_attribute("class").split()

    # Try it out on GET /api/v1/currencies again: now 200 and the currency list.
    status, text, curl, request_url = execute(browser, currencies)
    assert status == 200, text
    assert request_url == server.url("/api/v1/currencies")
    assert f"Authorization: Bearer {access_token}" in curl, curl
    rendered = json.loads(text)
    with server.client() as http:
        direct = http.get("/api/v1/currencies", headers={"Authorization": f"Bearer {access_token}"})
    assert direct.status_code == 200
    assert rendered == direct.json()
    codes = {currency["currency"] for currency in rendered}
    assert {"USD", "EUR"} <= codes
    browser.execute_script("arguments[0].scrollIntoView()", one(currencies, ".curl-command"))
    browser.save_screenshot(str(tmp_path / "currencies-200.png"))

    # Every asset came from the app itself: the browser asked nothing of any other host.
    urls = requested_urls(browser, server.base_url)
    outside = [
        url for url in urls if urlsplit(url).scheme not in ("data", "blob") and not same_origin(url, server.base_url)
    ]
    assert not outside, f"requests outside the app: {outside}"
    paths = {urlsplit(url).path for url in urls}
    for asset in (
        "/docs/",
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui-standalone-preset.js",
        "/openapi.json",
    ):
        assert asset in paths, f"{asset} not loaded; loaded: {sorted(paths)}"

    # Nothing went wrong in the page (a blocked asset, a CSP violation, a script error): the one
    # error logged is Chromium noting the deliberate 401 above.
    expected_401 = (
        f"{server.url('/api/v1/currencies')} - Failed to load resource: "
        "the server responded with a status of 401 (Unauthorized)"
    )
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert [message for message in errors if message != expected_401] == [], errors
