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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from observability_app import audit
from observability_app.admin.permissions import ensure_auditor_group
from observability_app.audit import integrity
from observability_app.audit.models import AuditEvent

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

    cells = driver.find_elements(By.CSS_SELECTOR, f"#result_list tbody .field-{column}")
    # A shortened id's whole value is its title; other cells are their text (an event type may wrap at "_").
    return [
        driver.execute_script(
            "const id = arguments[0].querySelector('.obs-id'); return id ? id.title : arguments[0].innerText;", cell
        ).replace("\n", "")
        for cell in cells
    ]


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
    _wait_rows(browser, "kind", ["ARTIFACT_CREATED"] * 4, "the events of the type")

    # Search a correlation id (the type filter stays: one event), then alone (three events).
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys(CORRELATION)
    search.submit()
    _wait(lambda: "q=" in browser.current_url, what="the search")
    _wait_rows(browser, "kind", ["ARTIFACT_CREATED"], "the search within the type")
    browser.get(f"{base}{CHANGELIST}")
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys(CORRELATION)
    search.submit()
    _wait(lambda: "q=" in browser.current_url and "event_type" not in browser.current_url, what="the search")
    _wait_rows(browser, "correlation", [CORRELATION] * 3, "the correlation's events")
    assert sorted(_rows(browser, "kind")) == [
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
    assert {row["event_type"] for row in rows} == set(_rows(browser, "kind"))

    # Open an event: readable payload, escaped, nothing to change.
    created_link = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")[-1]  # oldest: ARTIFACT_CREATED
    created_link.find_element(By.CSS_SELECTOR, ".field-occurred a").click()
    _wait(lambda: "/change/" in browser.current_url, what="the detail page")
    payload = _wait(lambda: browser.find_element(By.CSS_SELECTOR, "pre.obs-json").text, what="the payload")
    assert '"artifact_id": "models/classifier@2.0"' in payload
    assert SCRIPT in payload  # shown as text ...
    assert browser.execute_script("return window.obsPwned") is None  # ... never run
    assert "req-browser-1" in browser.page_source
    headline = browser.find_element(By.CSS_SELECTOR, ".obs-event-integrity").text
    assert headline.startswith("Not sealed yet") and "seal_audit" in headline  # the trail was never sealed
    assert "matches: the event is as it was recorded" in browser.page_source
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


# -- laptop and desktop widths: nothing cut, timeline and lineage, screenshots -----------------------------------------

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"  # gitignored (var/)
LONG_CORRELATION = "corr-" + "9f3a2b7c" * 14  # 117 characters: the kind of id that used to widen the table
LONG_SUBJECT = "bucket-research-vision/models/" + "resnet-finetuned-" * 6 + "@2.0.1"

#: The page's elements that stick out of their container (or the window): [] when nothing is cut.
OVERFLOW_JS = """
const out = [];
const width = document.documentElement.clientWidth;
const check = (el, box, what) => {
  const r = el.getBoundingClientRect();
  if (r.width && (r.right > box.right + 1 || r.left < box.left - 1)) {
    out.push(what + ": " + Math.round(r.right) + " > " + Math.round(box.right));
  }
};
const root = {left: 0, right: width};
const page = document.documentElement.scrollWidth;
if (page > width + 1) out.push("page scrolls sideways: " + page);
for (const sel of arguments[0]) {
  for (const container of document.querySelectorAll(sel)) {
    const box = container.getBoundingClientRect();
    check(container, root, sel);
    if (container.scrollWidth > container.clientWidth + 1) {
      out.push(sel + " scrolls: " + container.scrollWidth + " > " + container.clientWidth);
    }
    for (const cell of container.querySelectorAll("th, td")) {
      check(cell, box, sel + " " + (cell.className || cell.tagName));
    }
  }
}
return out;
"""


#: Elements of the container (arguments[0]) that stick out of it or cut their content, and object tools over the
#: title: [] when none. With arguments[1], shortened ids (an ellipsis, the whole value on hover) are not "cut".
INSIDE_JS = """
const out = [];
const root = document.querySelector(arguments[0]);
const box = root.getBoundingClientRect();
const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
  + (typeof el.className === "string" && el.className ? "." + el.className.trim().split(/\\s+/).join(".") : "");
for (const el of root.querySelectorAll("*")) {
  const r = el.getBoundingClientRect();
  if (!r.width || getComputedStyle(el).visibility === "hidden") continue;
  if (r.right > box.right + 1 || r.left < box.left - 1) {
    out.push(name(el) + " sticks out: " + Math.round(r.right) + " > " + Math.round(box.right));
  }
  const clips = ["hidden", "clip"].includes(getComputedStyle(el).overflowX);
  const shortened = arguments[1] && el.classList.contains("obs-id");  // ellipsis by design: whole on hover, copy
  const field = el.tagName === "INPUT" || el.tagName === "TEXTAREA";  // a long value scrolls in its box
  if (clips && el.scrollWidth > el.clientWidth + 1 && !shortened && !field) {
    out.push(name(el) + " cuts its content");
  }
}
const title = root.querySelector("h2");
const tools = root.querySelector(".object-tools");
if (title && tools) {
  const a = title.getBoundingClientRect(), b = tools.getBoundingClientRect();
  const meet = a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  if (meet) out.push("the object tools cover the title");
}
return out;
"""


@pytest.fixture
def wide_trail(transactional_db):
    """A request's events with long ids, a back-dated one, a provenance chain with a failed check and readers."""
    stamp = datetime(2025, 5, 6, 7, 8, tzinfo=UTC)
    upstream = "datasets/imagenet-subset@3"
    audit.record(
        "ARTIFACT_CREATED",
        {"artifact_id": upstream, "version": "3", "client_digest": "sha256:01", "stored_digest": "sha256:01",
         "size_bytes": 9, "bucket_id": "datasets"},
        occurred_at=stamp, actor="data-team", correlation_id="corr-upstream",
    )  # fmt: skip
    audit.record(
        "ARTIFACT_CREATED",
        {"artifact_id": LONG_SUBJECT, "version": "2.0.1", "client_digest": "sha256:ab", "stored_digest": "sha256:ab",
         "size_bytes": 2048, "bucket_id": "bucket-research-vision"},
        occurred_at=stamp, actor="uploader-with-a-rather-long-account-name", correlation_id=LONG_CORRELATION,
        source="api",
    )  # fmt: skip
    audit.record(
        "PROVENANCE_CHAIN_VERIFIED",
        {"artifact_id": LONG_SUBJECT, "upstream_refs": [upstream, "models/base@1"], "result": "failed"},
        occurred_at=stamp + timedelta(seconds=2), correlation_id=LONG_CORRELATION, source="worker", actor="verifier",
    )  # fmt: skip
    audit.record(
        "SAFETY_DECISION_OVERTURNED",
        {"artifact_id": LONG_SUBJECT, "previous_decision": "rejected", "new_decision": "approved",
         "overturn_reason": "false positive"},
        occurred_at=stamp + timedelta(minutes=3), correlation_id=LONG_CORRELATION, source="admin", actor="rita",
    )  # fmt: skip
    audit.record(
        "ARTIFACT_ACCESSED",
        {"artifact_id": LONG_SUBJECT, "version": "2.0.1", "reader": "ci-pipeline", "purpose": "evaluation"},
        occurred_at=stamp + timedelta(hours=1), correlation_id=LONG_CORRELATION, source="job", actor="ci",
    )  # fmt: skip
    audit.record(  # recorded last, dated earliest: listed by its time, not where it was inserted
        "SAFETY_DECISION_RECORDED",
        {"artifact_id": LONG_SUBJECT, "decision": "rejected", "scanner": "picklescan", "scanner_version": "0.0.2",
         "confidence": 0.61},
        occurred_at=stamp + timedelta(seconds=1), correlation_id=LONG_CORRELATION, source="worker", actor="scanner",
    )  # fmt: skip


def _login(browser, base: str, auditor, next_url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/admin/login/?next={next_url}")
    browser.find_element(By.NAME, "username").send_keys(auditor.username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    _wait(lambda: urlsplit(browser.current_url).path == urlsplit(next_url).path, what="the page after login")


def _shot(browser, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = browser.execute_script("return Math.min(document.documentElement.scrollHeight, 3000)")
    width = browser.execute_script("return window.innerWidth")
    browser.set_window_rect(width=width, height=max(height, 700))
    browser.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    return path


@pytest.mark.parametrize("width", [1366, 1920])
def test_pages_fit_laptop_and_desktop_widths(browser, live_server, auditor, wide_trail, width):
    from selenium.webdriver.common.by import By

    browser.set_window_rect(width=width, height=900)
    base = live_server.url
    _login(browser, base, auditor, CHANGELIST)

    # The changelist: nothing cut, long ids shortened with the whole value on hover and a copy button.
    overflow = browser.execute_script(OVERFLOW_JS, ["#changelist .results", "#result_list"])
    overflow += browser.execute_script(INSIDE_JS, "#content", True)
    _shot(browser, f"changelist-{width}")  # before the verdict: a failure leaves its picture
    browser.set_window_rect(width=width, height=900)
    assert overflow == []
    times = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody .field-occurred")]
    assert times == sorted(times, reverse=True)  # newest first by time, the back-dated event in its place
    cells = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody .field-correlation .obs-id")
    cell = next(cell for cell in cells if cell.get_attribute("title") == LONG_CORRELATION)
    assert cell.size["width"] < 300  # shortened (the whole id is some 900 px) ...
    assert browser.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth", cell)  # ... not cut off
    copy = cell.find_element(By.XPATH, "following-sibling::button[@class='obs-copy']")
    assert copy.get_attribute("data-copy") == LONG_CORRELATION
    copy.click()
    _wait(lambda: copy.get_attribute("data-state") in ("copied", "failed"), what="the copy button")
    assert browser.find_element(By.ID, "obs-integrity").text.startswith("Audit trail integrity")
    assert browser.find_elements(By.CSS_SELECTOR, "#obs-chart a.obs-chart-day")
    _assert_nothing_to_change(browser)

    # The timeline of the long correlation id: its five events in time order, with offsets and sources.
    browser.set_window_rect(width=width, height=900)
    browser.get(f"{base}{CHANGELIST}timeline/?{urlencode({'correlation_id': LONG_CORRELATION})}")
    rows = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#obs-timeline tbody tr"), what="the timeline")
    assert [row.find_element(By.CSS_SELECTOR, ".obs-type-cell").text.replace("\n", "") for row in rows] == [
        "ARTIFACT_CREATED",
        "SAFETY_DECISION_RECORDED",
        "PROVENANCE_CHAIN_VERIFIED",
        "SAFETY_DECISION_OVERTURNED",
        "ARTIFACT_ACCESSED",
    ]
    assert [row.find_element(By.CSS_SELECTOR, ".obs-offset").text for row in rows] == [
        "+0.000 s", "+1.000 s", "+2.000 s", "+3 min 00.0 s", "+1 h 00 min",
    ]  # fmt: skip
    assert [row.find_element(By.CSS_SELECTOR, ".obs-source").text for row in rows] == [
        "api", "worker", "worker", "admin", "job",
    ]  # fmt: skip
    assert browser.execute_script(OVERFLOW_JS, ["#obs-timeline"]) == []
    assert browser.execute_script(INSIDE_JS, "#content", True) == []
    _assert_nothing_to_change(browser)
    _shot(browser, f"timeline-{width}")

    # The lineage: the chain as a graph, the failed check, the overturn, the reader and purpose.
    browser.set_window_rect(width=width, height=900)
    browser.get(f"{base}{CHANGELIST}lineage/?{urlencode({'artifact': LONG_SUBJECT})}")
    graph = _wait(lambda: browser.find_element(By.CSS_SELECTOR, "#obs-lineage-graph svg"), what="the graph")
    boxes = graph.find_elements(By.CSS_SELECTOR, "a.obs-node-link")
    assert {box.get_attribute("data-artifact") for box in boxes} == {
        LONG_SUBJECT, "datasets/imagenet-subset@3", "models/base@1",
    }  # fmt: skip
    assert len(graph.find_elements(By.CSS_SELECTOR, "path.obs-edge-failed")) == 2
    summary = browser.find_element(By.ID, "obs-lineage-summary").text
    assert "approved" in summary and "overturn" in summary and "provenance chain failed" in summary
    readers = browser.find_element(By.ID, "obs-lineage-readers").text
    assert "ci-pipeline" in readers and "evaluation" in readers
    assert browser.execute_script(OVERFLOW_JS, ["#obs-lineage-chain", "#obs-lineage-readers"]) == []
    assert browser.execute_script(INSIDE_JS, "#content", True) == []
    _assert_nothing_to_change(browser)
    _shot(browser, f"lineage-{width}")

    # The detail page of a sealed event: the integrity headline in words, nothing cut.
    integrity.seal()
    event = AuditEvent.objects.get(subject=LONG_SUBJECT, event_type="ARTIFACT_CREATED")
    browser.set_window_rect(width=width, height=900)
    browser.get(f"{base}{CHANGELIST}{event.pk}/change/")
    headline = _wait(lambda: browser.find_element(By.CSS_SELECTOR, ".obs-event-integrity"), what="the headline")
    assert headline.text.startswith("Sealed and intact")
    checks = browser.find_element(By.CSS_SELECTOR, ".obs-integrity-checks").text
    assert "Digest against the seal's copy" in checks and "matches the digest the seal holds" in checks
    overflow = browser.execute_script(INSIDE_JS, "#content", False)  # ids whole here: nothing may be cut
    _shot(browser, f"detail-{width}")
    assert overflow == [], "\n".join(overflow)
    _assert_nothing_to_change(browser)
