"""The compliance browser driven in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

An auditor logs in, filters by type, searches a correlation id, exports the selection, opens an event and follows
"all events of this correlation id"; add, change and delete are offered nowhere and refused when posted directly.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from observability_app import audit
from observability_app.auditors import ensure_auditor_group

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)
CHANGELIST = "/admin/observability_app/auditevent/"
CORRELATION = "browser-corr-7f3a"
PASSWORD = "correct-horse-battery-staple"
SCRIPT = "<script>window.obsPwned = 1</script>"

pytestmark = pytest.mark.browser


def _require_system_tools() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(path) or shutil.which(path))]
    if missing:
        message = f"{', '.join(missing)} not installed (scripts/install-system-deps.sh installs them)"
        if os.environ.get("OBSERVABILITY_TEST_REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    path = tmp_path / "downloads"
    path.mkdir()
    return path


@pytest.fixture
def browser(tmp_path: Path, downloads: Path):
    _require_system_tools()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def auditor(django_user_model):
    user = django_user_model.objects.create_user("auditor-ann", password=PASSWORD)
    ensure_auditor_group(users=[user.username])
    return user


@pytest.fixture
def trail(transactional_db):
    """Three events of one correlation among others of other types and correlations."""
    artifact = "models/classifier@2.0"
    stamp = {"correlation_id": CORRELATION, "occurred_at": datetime(2025, 5, 6, 7, 8, tzinfo=UTC)}
    audit.record(
        "ARTIFACT_CREATED",
        {
            "artifact_id": artifact,
            "version": "2.0",
            "client_digest": "sha256:ab",
            "stored_digest": "sha256:ab",
            "size_bytes": 2048,
            "bucket_id": "models",
            "note": SCRIPT,
        },
        actor="uploader",
        request_id="req-browser-1",
        **stamp,
    )
    audit.record(
        "SAFETY_DECISION_RECORDED",
        {"artifact_id": artifact, "decision": "approved", "scanner": "s", "scanner_version": "1", "confidence": 0.97},
        actor="scanner-bot",
        **stamp,
    )
    audit.record(
        "ARTIFACT_ACCESSED",
        {"artifact_id": artifact, "version": "2.0", "reader": "ci", "purpose": "evaluation"},
        actor="ci",
        **stamp,
    )
    for index in range(6):
        audit.record(
            "ARTIFACT_CREATED" if index % 2 else "ARTIFACT_ACCESSED",
            {
                "artifact_id": f"models/other@{index}",
                "version": str(index),
                "client_digest": "sha256:cd",
                "stored_digest": "sha256:cd",
                "size_bytes": index,
                "bucket_id": "models",
            }
            if index % 2
            else {"artifact_id": f"models/other@{index}", "version": str(index), "reader": "r", "purpose": "p"},
            actor="someone-else",
            correlation_id=f"other-{index}",
        )


def _rows(driver, column: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, f"#result_list tbody .field-{column}")]


def _wait(condition, timeout: float = 15.0, what: str = "condition"):
    """Poll ``condition`` until it is truthy; a page still being replaced (stale elements) counts as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (StaleElementReferenceException, NoSuchElementException):
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last seen: {last!r})")


def _wait_rows(driver, column: str, expected: list[str], what: str) -> None:
    """Wait until the list shows exactly ``expected`` in ``column`` (in any order), once the new page has loaded."""
    _wait(
        lambda: (
            driver.execute_script("return document.readyState") == "complete"
            and sorted(_rows(driver, column)) == sorted(expected)
        ),
        what=what,
    )


def _assert_nothing_to_change(driver) -> None:
    from selenium.webdriver.common.by import By

    main = driver.find_element(By.ID, "content-main")
    assert main.find_elements(By.CSS_SELECTOR, "a.addlink, a.deletelink, select[name=action]") == []
    saves = "input[name=_save], input[name=_continue], input[name=_addanother]"
    assert main.find_elements(By.CSS_SELECTOR, saves) == []
    assert main.find_elements(By.CSS_SELECTOR, "a[href$='/add/'], a[href$='/delete/']") == []
    assert main.find_elements(By.CSS_SELECTOR, "textarea, form#auditevent_form input[type=text]") == []


def test_auditor_browses_filters_searches_exports_and_cannot_change(browser, live_server, auditor, trail, downloads):
    from selenium.webdriver.common.by import By

    base = live_server.url
    browser.get(f"{base}/admin/login/?next={CHANGELIST}")
    browser.find_element(By.NAME, "username").send_keys(auditor.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    _wait(lambda: urlsplit(browser.current_url).path == CHANGELIST, what="the changelist after login")
    assert "Select audit event to view" in browser.page_source
    _assert_nothing_to_change(browser)

    # Filter by type from the sidebar.
    sidebar = browser.find_element(By.ID, "changelist-filter")
    sidebar.find_element(By.LINK_TEXT, "ARTIFACT_CREATED").click()
    _wait(lambda: "event_type=ARTIFACT_CREATED" in browser.current_url, what="the type filter")
    _wait_rows(browser, "event_type", ["ARTIFACT_CREATED"] * 4, "the events of the type")

    # Search a correlation id (the type filter stays: one event), then alone (three events).
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys(CORRELATION)
    search.submit()
    _wait(lambda: "q=" in browser.current_url, what="the search")
    _wait_rows(browser, "event_type", ["ARTIFACT_CREATED"], "the search within the type")
    browser.get(f"{base}{CHANGELIST}")
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys(CORRELATION)
    search.submit()
    _wait(lambda: "q=" in browser.current_url and "event_type" not in browser.current_url, what="the search")
    _wait_rows(browser, "correlation", [CORRELATION] * 3, "the correlation's events")
    assert sorted(_rows(browser, "event_type")) == [
        "ARTIFACT_ACCESSED",
        "ARTIFACT_CREATED",
        "SAFETY_DECISION_RECORDED",
    ]
    _assert_nothing_to_change(browser)

    # Export the selection.
    browser.find_element(By.ID, "obs-export-csv").click()
    exported = _wait(
        lambda: (
            [p for p in downloads.glob("audit-events-*.csv") if p.stat().st_size > 0]
            and not list(downloads.glob("*.crdownload"))
        ),
        what="the CSV download",
    )
    del exported
    (csv_file,) = downloads.glob("audit-events-*.csv")
    rows = list(csv.DictReader(io.StringIO(csv_file.read_text("utf-8"))))
    assert [row["correlation_id"] for row in rows] == [CORRELATION] * 3
    assert {row["event_type"] for row in rows} == set(_rows(browser, "event_type"))

    # Open an event: readable payload, escaped, nothing to change.
    created_link = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")[-1]  # oldest: ARTIFACT_CREATED
    created_link.find_element(By.CSS_SELECTOR, ".field-occurred a").click()
    _wait(lambda: "/change/" in browser.current_url, what="the detail page")
    payload = _wait(lambda: browser.find_element(By.CSS_SELECTOR, "pre.obs-json").text, what="the payload")
    assert '"artifact_id": "models/classifier@2.0"' in payload
    assert SCRIPT in payload  # shown as text ...
    assert browser.execute_script("return window.obsPwned") is None  # ... never run
    assert "req-browser-1" in browser.page_source
    assert "matches the stored content" in browser.page_source
    _assert_nothing_to_change(browser)
    assert browser.find_elements(By.CSS_SELECTOR, "a.closelink")

    # Posted directly, with a valid CSRF token, add / change / delete are refused.
    statuses = browser.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        const token = document.querySelector("[name=csrfmiddlewaretoken]").value;
        const base = window.location.pathname.replace(/change\\/$/, "");
        const post = (url, fields) => {
            const body = new URLSearchParams({csrfmiddlewaretoken: token, ...fields});
            return fetch(url, {method: "POST", body, credentials: "same-origin"}).then(r => r.status);
        };
        Promise.all([
            post(base + "change/", {subject: "forged", actor: "mallory"}),
            post(base + "delete/", {post: "yes"}),
            post("/admin/observability_app/auditevent/add/", {subject: "forged"}),
            post("/admin/observability_app/auditevent/", {action: "delete_selected", _selected_action: "1"}),
        ]).then(done, e => done(String(e)));
        """
    )
    assert statuses == [403, 403, 403, 403]
    browser.get(f"{base}{CHANGELIST}add/")
    assert "403" in browser.title or "Forbidden" in browser.page_source

    # "All events of this correlation id", from the event.
    browser.back()
    _wait(lambda: browser.find_element(By.ID, "obs-correlation-events"), what="the detail page again").click()
    _wait(lambda: "correlation_id=" in browser.current_url, what="the correlation link")
    _wait_rows(browser, "correlation", [CORRELATION] * 3, "all events of the correlation id")
