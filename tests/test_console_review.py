"""The console's Review tab in a real browser (Debian's Chromium via Playwright) against a real
``bentoml serve`` with a trained model and the bearer token on: an analyst reviews 20 queued
frauds by keyboard alone and the labels show in ``GET /performance?source=analyst``; two
browser contexts (two reviewers) working the queue at once never see the same item; a label
after its lease expired is stored and the tab says so."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import TARGET_NAME
from tests.conftest import CHROMIUM
from tests.conftest import REPO
from tests.conftest import RunningServer
from tests.conftest import skip_module_without_chromium
from tests.conftest import start_server
from training.data import generate_transactions

sync_api = pytest.importorskip("playwright.sync_api")
skip_module_without_chromium()

TOKEN = "review-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REAL_SAMPLE = REPO.parent / "shared" / "data" / "creditcard_real_sample.csv.gz"
#: The served default: a row is kept for review when decided fraud or at least this likely.
MIN_PROBABILITY = 0.5
QUEUED = 20


@pytest.fixture(scope="module")
def review_server(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(
        trained_store, tmp_path_factory.mktemp("review"), "mlp", FRAUD_API_TOKEN=TOKEN
    )
    yield running
    running.server.stop()


@pytest.fixture(scope="module")
def frauds() -> Iterator[pd.DataFrame]:
    """Real frauds (Class 1 of the real sample) when the sample is here, else the synthetic
    generator's frauds, shuffled once; each test takes its own rows off the front."""
    if REAL_SAMPLE.exists():
        frame = pd.read_csv(REAL_SAMPLE)
    else:
        frame = generate_transactions(20_000, fraud_rate=0.05, seed=34)
    rows = frame[frame[TARGET_NAME] == 1].sample(frac=1, random_state=34)
    yield rows[list(FEATURE_NAMES)].reset_index(drop=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def scored_count(server: RunningServer) -> int:
    # A server without a token ignores the header.
    answer = httpx.get(f"{server.url}/performance", headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["scored"]


def queue_frauds(server: RunningServer, frauds: pd.DataFrame, prefix: str, n: int) -> list[str]:
    """POST frauds to /predict one at a time, taking them off the front of `frauds`, until `n`
    of them are kept for review (decided fraud, or at least `MIN_PROBABILITY`); wait until the
    score log holds them. Returns the kept ids."""
    before = scored_count(server)
    kept: list[str] = []
    posted = 0
    while len(kept) < n:
        assert posted < len(frauds), f"only {len(kept)} of {len(frauds)} frauds were flagged"
        row = frauds.iloc[0].to_dict()
        frauds.drop(frauds.index[0], inplace=True)
        transaction_id = f"{prefix}-{posted:03d}"
        answer = httpx.post(
            f"{server.url}/predict",
            json={"transactions": [{**row, "transaction_id": transaction_id}]},
            headers=AUTH,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()
        posted += 1
        if prediction["is_fraud"] or prediction["fraud_probability"] >= MIN_PROBABILITY:
            kept.append(transaction_id)
    deadline = time.monotonic() + 30
    while scored_count(server) < before + posted:  # the writer commits within about a second
        assert time.monotonic() < deadline, "the score log did not receive the rows"
        time.sleep(0.2)
    return kept


def reviewer_page(
    browser: sync_api.Browser,
    server: RunningServer,
    token: str | None = TOKEN,
    **review_settings: str,
) -> sync_api.Page:
    """A fresh browser context (its own localStorage: its own reviewer) on the console,
    the token (if the server has one) typed into the console's prompt."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    if review_settings:
        settings = json.dumps(json.dumps(review_settings))
        context.add_init_script(f"localStorage.setItem('fraud-console-review', {settings})")
    page = context.new_page()
    page.set_default_timeout(120_000)  # the first explanation compiles shap's numba code
    page.goto(f"{server.url}/")
    if token is not None:
        page.wait_for_selector("#token-dialog[open]")
        page.keyboard.type(token)
        page.keyboard.press("Enter")
    page.wait_for_selector("body[data-ready='1']")
    return page


def selected_id(page: sync_api.Page) -> str:
    return page.locator("#review-table tbody tr.selected code").text_content() or ""


def wait_item_loaded(page: sync_api.Page) -> str:
    """The selected row's id, once its reasons are drawn."""
    page.wait_for_function(
        "() => { const row = document.querySelector('#review-table tr.selected code');"
        " const item = document.querySelector('#review-item');"
        " return row && item.dataset.loaded === row.textContent; }"
    )
    return selected_id(page)


def label_by_key(page: sync_api.Page, key: str) -> str:
    """Press F or G on the selected item; wait for the live region to say it was stored."""
    transaction_id = wait_item_loaded(page)
    page.keyboard.press(key)
    page.wait_for_selector("#panel-review:not([data-busy])")
    assert page.text_content("#review-announce").startswith(f"{transaction_id} labelled")
    return transaction_id


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two ``rgb(...)`` colours."""

    def luminance(colour: str) -> float:
        channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_an_analyst_reviews_20_frauds_by_keyboard_alone(
    browser: sync_api.Browser, review_server: RunningServer, frauds: pd.DataFrame
) -> None:
    queued = queue_frauds(review_server, frauds, "fraud", QUEUED)
    started = time.monotonic()
    page = reviewer_page(browser, review_server)
    posted: list[dict] = []
    page.on(
        "request",
        lambda r: (
            posted.append({"auth": r.headers.get("authorization"), "body": r.post_data_json})
            if r.method == "POST" and r.url.endswith("/feedback")
            else None
        ),
    )
    # The Review tab, reached with Shift+Tab (the tabs come before the panels; the closed token
    # prompt left the focus in the form) and opened with Enter: no mouse anywhere.
    for _ in range(60):
        page.keyboard.press("Shift+Tab")
        if page.evaluate("document.activeElement.dataset.panel") == "review":
            break
    page.keyboard.press("Enter")
    page.wait_for_selector("#review-table tbody tr.selected")
    assert page.locator("#review-table tbody tr").count() == QUEUED
    shown = page.locator("#review-table tbody tr code").all_text_contents()
    assert sorted(shown) == sorted(queued)
    assert page.text_content("#review-open") == str(QUEUED)
    assert page.text_content("#review-today") == "0"
    probabilities = [
        float(t.split()[0])
        for t in page.locator("#review-table tbody tr td:nth-child(2)").all_text_contents()
    ]
    assert probabilities == sorted(probabilities, reverse=True)  # riskiest first
    assert all(
        re.fullmatch(r"\d+(\.\d)? (s|min)", a)
        for a in page.locator("#review-table tbody tr td:nth-child(6)").all_text_contents()
    )

    # Next and previous: J/K and the arrows; focus follows the selection.
    assert selected_id(page) == shown[0]
    for key, expected in (("j", 1), ("j", 2), ("k", 1), ("ArrowDown", 2), ("ArrowUp", 1)):
        page.keyboard.press(key)
        assert selected_id(page) == shown[expected]
    assert page.evaluate("document.activeElement.matches('#review-table tr.selected')")
    page.keyboard.press("k")
    assert selected_id(page) == shown[0]

    # The selected item's reasons: the chart and table the console draws for explanations.
    wait_item_loaded(page)
    assert page.locator("#review-reasons tbody tr").count() == 5
    assert page.locator("#review-chart .bars path").count() == 10
    assert "leased to you" in page.text_content("#review-item-facts")

    # 20 labels by key: G for two (an analyst may judge a flagged fraud genuine), F for the rest.
    keys = ["g" if i in (3, 11) else "f" for i in range(QUEUED)]
    labelled = [label_by_key(page, key) for key in keys]
    assert labelled == shown  # each label moved on to the next item, in queue order
    page.wait_for_selector("#review-empty:not([hidden])")
    assert page.text_content("#review-open") == "0"
    assert page.text_content("#review-today") == str(QUEUED)
    elapsed = time.monotonic() - started

    reviewer = page.input_value("#review-reviewer")
    assert re.fullmatch(r"analyst-[0-9a-f]{12}", reviewer)
    assert len(posted) == QUEUED
    assert {p["auth"] for p in posted} == {f"Bearer {TOKEN}"}
    assert [p["body"] for p in posted] == [
        [{"transaction_id": t, "label": int(k == "f"), "reviewer": reviewer, "source": "analyst"}]
        for t, k in zip(shown, keys, strict=True)
    ]

    # The labels are in /performance, split by source.
    analyst = httpx.get(
        f"{review_server.url}/performance", params={"source": "analyst"}, headers=AUTH, timeout=30
    ).json()
    assert analyst["labels_by_source"]["analyst"] == QUEUED
    assert analyst["labelled"] == QUEUED
    assert (analyst["models"][0]["labelled"], analyst["models"][0]["frauds"]) == (QUEUED, 18)
    chargeback = httpx.get(
        f"{review_server.url}/performance",
        params={"source": "chargeback"},
        headers=AUTH,
        timeout=30,
    ).json()
    assert chargeback["labelled"] == 0
    item = httpx.get(
        f"{review_server.url}/review/{shown[3]}",
        params={"reviewer": "auditor"},
        headers=AUTH,
        timeout=30,
    ).json()
    assert item["label"]["label"] == 0
    assert (item["label"]["reviewer"], item["label"]["source"]) == (reviewer, "analyst")

    # The Monitoring tab shows the split and the label delay in human units.
    page.locator("nav button[data-panel='monitoring']").focus()
    page.keyboard.press("Enter")
    page.locator("#health-source").select_option("analyst")
    page.wait_for_function(
        "document.querySelector('#health-summary').textContent.includes('from analysts 20')"
    )
    assert re.search(r"median label delay \d+(\.\d)? (s|min)", page.text_content("#health-summary"))
    print(f"20 items reviewed by keyboard in {elapsed:.1f} s (page open to last label)")
    page.context.close()


def test_two_reviewers_working_at_once_never_see_the_same_item(
    browser: sync_api.Browser, review_server: RunningServer, frauds: pd.DataFrame
) -> None:
    queued = set(queue_frauds(review_server, frauds, "pair", QUEUED))
    pages = [reviewer_page(browser, review_server, limit="5") for _ in range(2)]
    seen: list[set[str]] = [set(), set()]
    labelled: list[list[str]] = [[], []]

    def record(i: int, response: sync_api.Response) -> None:
        path = response.url.split("?")[0]
        if "/review" in path and response.request.method == "GET" and response.ok:
            body = response.json()
            ids = [x["transaction_id"] for x in body["items"]] if "items" in body else []
            seen[i].update(ids or [body["transaction_id"]])

    names = []
    for i, page in enumerate(pages):
        page.on("response", lambda r, i=i: record(i, r))
        page.locator("nav button[data-panel='review']").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("#review-table tbody tr.selected")
        assert page.locator("#review-table tbody tr").count() == 5
        names.append(page.input_value("#review-reviewer"))
    assert names[0] != names[1], "two browser contexts are two reviewers"
    # Turn by turn until both queues are empty: each holds its leased items meanwhile.
    for _ in range(4 * QUEUED):
        busy = [p for p in pages if p.locator("#review-empty").is_hidden()]
        if not busy:
            break
        for i, page in enumerate(pages):
            if page in busy and page.locator("#review-table tr.selected").count():
                labelled[i].append(label_by_key(page, "f" if i == 0 else "g"))
    assert not seen[0] & seen[1], f"both reviewers saw {sorted(seen[0] & seen[1])}"
    assert seen[0] | seen[1] == queued
    assert sorted(labelled[0] + labelled[1]) == sorted(queued)
    assert labelled[0] and labelled[1], "both reviewers got work"
    for i, ids in enumerate(labelled):
        for transaction_id in ids[:3]:
            label = httpx.get(
                f"{review_server.url}/review/{transaction_id}",
                params={"reviewer": "auditor"},
                headers=AUTH,
                timeout=30,
            ).json()["label"]
            assert (label["reviewer"], label["label"]) == (names[i], int(i == 0))
    for page in pages:
        page.context.close()


def test_review_tab_is_accessible(
    browser: sync_api.Browser, review_server: RunningServer, frauds: pd.DataFrame
) -> None:
    """Labels on every control, the focus order, a visible focus, AA contrast, a live region."""
    queue_frauds(review_server, frauds, "a11y", 2)
    page = reviewer_page(browser, review_server)
    page.locator("nav button[data-panel='review']").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#review-table tbody tr.selected")
    wait_item_loaded(page)
    for name in ("Reviewer", "Order", "Items per fetch"):
        assert page.get_by_label(name, exact=True).count() == 1
    assert page.get_by_role("button", name="Fraud F").count() == 1
    assert page.get_by_role("button", name="Genuine G").count() == 1
    assert page.locator("#review-announce").get_attribute("aria-live") == "polite"
    assert page.locator("#review-table").get_attribute("aria-label")
    # Focus order: the settings, then the queue's selected row, then the label buttons.
    page.locator("#review-reviewer").focus()
    order = []
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert order == [
        "review-order",
        "review-limit",
        "review-refresh",
        "TR",
        "review-fraud",
        "review-genuine",
    ]
    # Visible focus on the row and on a button.
    for selector in ("#review-genuine", "#review-table tr.selected"):
        page.locator(selector).focus()
        style = page.locator(selector).evaluate(
            "e => { const s = getComputedStyle(e); return [s.outlineStyle, s.outlineWidth]; }"
        )
        assert style[0] != "none" and float(style[1].removesuffix("px")) >= 2
    # Text contrast (WCAG AA, 4.5:1) of what an analyst reads and presses.
    pairs = page.evaluate(
        """() => {
          const bg = (e) => { for (; e; e = e.parentElement) {
            const c = getComputedStyle(e).backgroundColor;
            if (c !== 'rgba(0, 0, 0, 0)') return c; } return 'rgb(255, 255, 255)'; };
          return ['#review-fraud', '#review-genuine', '#review-refresh', '#review-keys',
                  '#review-table tr.selected td', '#review-item-facts', 'nav button.active']
            .map((s) => { const e = document.querySelector(s);
                          return [s, getComputedStyle(e).color, bg(e)]; });
        }"""
    )
    for selector, foreground, background in pairs:
        assert contrast(foreground, background) >= 4.5, (selector, foreground, background)
    # The result of a label is announced in the live region.
    transaction_id = label_by_key(page, "g")
    assert page.get_by_role("status").filter(has_text=transaction_id).count() == 1
    page.context.close()


def test_a_label_after_its_lease_expired_is_stored_and_the_tab_says_so(
    browser: sync_api.Browser,
    trained_store: Path,
    tmp_path: Path,
    frauds: pd.DataFrame,
) -> None:
    running = start_server(trained_store, tmp_path, "mlp", FRAUD_REVIEW_LEASE_SECONDS="2")
    try:
        (queued,) = queue_frauds(running, frauds, "late", 1)
        page = reviewer_page(browser, running, token=None)
        page.locator("nav button[data-panel='review']").focus()
        page.keyboard.press("Enter")
        assert wait_item_loaded(page) == queued
        assert "leased to you" in page.text_content("#review-item-facts")
        page.wait_for_timeout(3_000)  # the 2 s lease, renewed when the item opened, runs out
        label_by_key(page, "f")
        assert "(stored; lease expired)" in page.text_content("#review-announce")
        analyst = httpx.get(
            f"{running.url}/performance", params={"source": "analyst"}, timeout=30
        ).json()
        assert analyst["labels_by_source"]["analyst"] == 1
        page.context.close()
    finally:
        running.server.stop()
