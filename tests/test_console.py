"""The analyst console at ``/ui`` in a real browser (Debian's Chromium via Playwright) against a
real ``bentoml serve``: form, file upload, sorting, explanations, download, drift, bad files,
and the token prompt."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fraud_detection.prevalence import PRODUCTION_FRAUD_RATE
from fraud_detection.schema import FEATURE_NAMES
from tests.conftest import CHROMIUM
from tests.conftest import RunningServer
from tests.conftest import skip_module_without_chromium
from tests.conftest import start_server
from training.data import generate_transactions

sync_api = pytest.importorskip("playwright.sync_api")
skip_module_without_chromium()

TOKEN = "console-test-token"
#: Drift settings that judge the first 200 rows at once, so the panel has a verdict to show.
QUICK_DRIFT = {
    "FRAUD_DRIFT_MIN_ROWS": "200",
    "FRAUD_DRIFT_EVERY_ROWS": "200",
    "FRAUD_DRIFT_EVERY_SECONDS": "1",
    "FRAUD_DRIFT_MAX_CPU_SHARE": "1",
    "FRAUD_DRIFT_WINDOW_ROWS": "400",
}


@pytest.fixture(scope="module")
def console_server(
    trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(trained_store, tmp_path_factory.mktemp("console"), "mlp", **QUICK_DRIFT)
    yield running
    running.server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)  # the first explanation compiles shap's numba code
    yield page
    context.close()


def open_console(page: sync_api.Page, server: RunningServer) -> None:
    page.goto(f"{server.url}/")  # the root leads to the console
    assert page.url.endswith("/ui/")
    page.wait_for_selector("body[data-ready='1']")


def transactions_csv(n: int, seed: int, **mutate: str) -> tuple[str, list[dict[str, float]]]:
    frame = generate_transactions(max(n, 50), fraud_rate=0.3, seed=seed).head(n)
    rows = frame[list(FEATURE_NAMES)].to_dict(orient="records")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["transaction_id", *FEATURE_NAMES, "note"])
    for i, row in enumerate(rows):
        cells = [f"tx-{i:04d}", *(repr(row[f]) for f in FEATURE_NAMES), f"note, {i}"]
        writer.writerow(cells)
    text = out.getvalue()
    for old, new in mutate.items():
        text = text.replace(old, new, 1)
    return text, rows


def test_form_scores_the_example_with_reasons(page: sync_api.Page, console_server) -> None:
    open_console(page, console_server)
    assert page.input_value("#field-Amount") == "42.5"
    page.fill("#field-V14", "-6.5")
    page.fill("#field-V4", "4.2")
    page.click("#score-submit")
    page.wait_for_selector("#score-result:not([hidden])")
    shown = float(page.text_content("#score-probability"))
    row = {name: float(page.input_value(f"#field-{name}")) for name in FEATURE_NAMES}
    (expected,) = httpx.post(
        f"{console_server.url}/predict", json={"transactions": [row]}, timeout=30
    ).json()
    assert shown == pytest.approx(expected["fraud_probability"], rel=1e-3, abs=1e-6)
    decision = page.text_content("#score-decision")
    assert decision == ("FRAUD" if expected["is_fraud"] else "OK")
    assert page.locator("#score-reasons tbody tr").count() == 5
    assert page.locator("#score-chart .bars path").count() == 10  # plotly drew the bars


def test_form_refuses_a_non_number_before_sending(page: sync_api.Page, console_server) -> None:
    open_console(page, console_server)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    page.fill("#field-V3", "abc")
    page.fill("#field-Amount", "-1")
    page.click("#score-submit")
    error = page.text_content("#score-error")
    assert 'V3: not a number: "abc"' in error and "Amount: must be >= 0" in error
    assert sent == []


def test_file_is_scored_sorted_explained_and_downloaded(
    page: sync_api.Page, console_server, tmp_path: Path
) -> None:
    text, rows = transactions_csv(150, seed=21)
    path = tmp_path / "batch.csv"
    path.write_text(text)
    expected = httpx.post(
        f"{console_server.url}/predict", json={"transactions": rows}, timeout=30
    ).json()
    open_console(page, console_server)
    page.click("nav button[data-panel='file']")
    page.set_input_files("#file-input", str(path))
    page.wait_for_selector("#file-result:not([hidden])")
    assert page.text_content("#file-rows") == "150"
    flagged = sum(p["is_fraud"] for p in expected)
    assert 0 < flagged < 150
    assert page.text_content("#file-flagged") == str(flagged)
    body = page.locator("#file-table tbody tr")
    assert body.count() == 150
    assert page.locator("#file-table tbody tr.flagged").count() == flagged
    # Extra columns are echoed, quoted commas included.
    assert (
        page.locator("#file-table tbody tr").first.locator("td").nth(1).text_content() == "tx-0000"
    )
    assert (
        page.locator("#file-table tbody tr").first.locator("td").nth(2).text_content() == "note, 0"
    )

    def shown_probabilities() -> list[float]:
        return [
            float(t)
            for t in page.locator("#file-table tbody tr td:nth-last-child(2)").all_text_contents()
        ]

    page.click("#sort-probability")
    descending = shown_probabilities()
    assert descending == sorted(descending, reverse=True)
    assert descending[0] == pytest.approx(max(p["fraud_probability"] for p in expected), rel=1e-3)
    page.click("#sort-probability")
    ascending = shown_probabilities()
    assert ascending == sorted(ascending)

    top = page.locator("#file-table tbody tr").last  # ascending: the highest score is last
    row_number = int(top.locator("td").first.text_content())
    top.click()
    page.wait_for_selector("#file-reasons tbody tr")
    assert page.text_content("#file-explanation-title").startswith(f"Row {row_number}:")
    assert page.locator("#file-reasons tbody tr").count() == 5

    with page.expect_download() as download:
        page.click("#file-download")
    scored = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(scored) == 150
    assert [r["transaction_id"] for r in scored] == [f"tx-{i:04d}" for i in range(150)]
    assert scored[3]["note"] == "note, 3"
    for got, want in zip(scored, expected, strict=True):
        assert float(got["fraud_probability"]) == pytest.approx(want["fraud_probability"], abs=1e-6)
        assert got["is_fraud"] == str(want["is_fraud"]).lower()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        ({"V17,": "V17x,"}, "missing columns: V17"),
        ({"tx-0002,": "tx-0002,oops"}, "row 3 (line 4), column Time: not a number"),
        (None, "row 5 (line 6), column V1: empty cell"),
        ({'"note, 19"': '"note, 19'}, "the quote opened on line 21 is never closed"),
        ({"tx-0004,": 'tx-0004",'}, "a quote inside an unquoted field on line 6"),
    ],
)
def test_bad_files_are_refused_whole_naming_row_and_column(
    page: sync_api.Page, console_server, tmp_path: Path, mutate, message: str
) -> None:
    text, _ = transactions_csv(20, seed=5, **(mutate or {}))
    if mutate is None:  # blank the V1 cell of data row 5
        lines = text.splitlines()
        cells = next(csv.reader([lines[5]]))
        cells[2] = ""
        out = io.StringIO()
        csv.writer(out).writerow(cells)
        lines[5] = out.getvalue().rstrip("\r\n")
        text = "\n".join(lines) + "\n"
    path = tmp_path / "bad.csv"
    path.write_text(text)
    open_console(page, console_server)
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.method == "POST" else None)
    page.click("nav button[data-panel='file']")
    page.set_input_files("#file-input", str(path))
    page.wait_for_selector("#file-error:not([hidden])")
    assert message in page.text_content("#file-error")
    assert sent == [], "nothing may be sent from a bad file"


def test_oversize_file_names_the_limit(page: sync_api.Page, trained_store, tmp_path: Path) -> None:
    running = start_server(trained_store, tmp_path, "mlp", FRAUD_MAX_ROWS="10")
    try:
        path = tmp_path / "big.csv"
        path.write_text(transactions_csv(11, seed=2)[0])
        open_console(page, running)
        page.click("nav button[data-panel='file']")
        page.set_input_files("#file-input", str(path))
        page.wait_for_selector("#file-error:not([hidden])")
        assert "the file has 11 rows; the limit per request is 10" in page.text_content(
            "#file-error"
        )
    finally:
        running.server.stop()


def test_model_and_drift_panels(page: sync_api.Page, console_server) -> None:
    frame = generate_transactions(400, seed=8)
    frame["V14"] += 3 * frame["V14"].std()
    rows = frame[list(FEATURE_NAMES)].to_dict(orient="records")
    answer = httpx.post(f"{console_server.url}/predict", json={"transactions": rows}, timeout=30)
    assert answer.status_code == 200
    scored = answer.json()
    open_console(page, console_server)
    page.click("nav button[data-panel='model']")
    info = httpx.get(f"{console_server.url}/model/info", timeout=10).json()
    facts = page.text_content("#model-facts")
    assert info["model"] in facts and info["threshold"]["rule"] in facts
    if info["ensemble"] is not None:
        assert f"{info['ensemble']['members']} cross-fitted" in (facts or "")
        if info["ensemble"]["trees"] is not None:
            assert f"{info['ensemble']['trees']['members']} lightgbm boosters" in (facts or "")
    assert page.locator("#model-metrics tbody tr").count() == len(info["metrics"])
    # The card's metrics at the deployment base rate too: precision reweighted from the card's
    # precision, recall and fraud rate (its false-positive rate), recall unchanged.
    m = info["metrics"]
    fpr = (
        m["recall"]
        * (1 - m["precision"])
        / m["precision"]
        * m["prevalence"]
        / (1 - m["prevalence"])
    )
    caught = m["recall"] * PRODUCTION_FRAUD_RATE
    precision = caught / (caught + fpr * (1 - PRODUCTION_FRAUD_RATE))

    def at_base_rate(metric: str) -> str:
        row = page.locator("#model-metrics tbody tr").filter(
            has=page.locator("td:first-child", has_text=re.compile(f"^{metric}$"))
        )
        return row.locator("td").nth(2).text_content() or ""

    assert "at the deployment base rate (0.1727% fraud)" in page.text_content("#model-metrics")
    assert at_base_rate("precision") == f"{precision:.4f} (reweighted)"
    assert at_base_rate("recall") == f"{m['recall']:.4f} (same)"
    assert at_base_rate("average_precision") == "not in the card"

    page.click("nav button[data-panel='monitoring']")
    for _ in range(30):  # the detector judges the window within seconds
        page.click("#drift-refresh")
        page.wait_for_timeout(1000)
        if "DRIFT" in (page.text_content("#drift-verdict") or ""):
            break
    assert "DRIFT" in page.text_content("#drift-verdict")
    assert "NO DRIFT" not in page.text_content("#drift-verdict")
    assert "V14" in page.text_content("#drift-facts")
    # Model health: the 400 shifted rows, labelled through /feedback, are judged.
    ids = [r["transaction_id"] for r in scored]
    labels = [
        {"transaction_id": i, "label": int(y)} for i, y in zip(ids, frame["Class"], strict=True)
    ]
    for _ in range(20):  # the score log is written within about a second
        if (
            httpx.post(f"{console_server.url}/feedback", json=labels, timeout=30).json()["stored"]
            == 400
        ):
            break
        page.wait_for_timeout(500)
    page.click("#drift-refresh")
    # The table is there from the tab's first refresh (nothing labelled): wait for this one's.
    page.wait_for_function("document.querySelector('#health-table').innerText.includes('400 (')")
    assert "on 400 transactions" in page.text_content("#health-table")
    assert re.search(r"median label delay \d+(\.\d)? (s|min)", page.text_content("#health-summary"))
    assert "labelled of" in page.text_content("#health-summary")
    with page.expect_popup() as popup:
        page.click("#drift-report")
    report = popup.value
    report.wait_for_load_state()
    report.wait_for_function(
        "document.body && document.body.innerText.includes('V14')", timeout=120_000
    )


def test_token_is_asked_once_and_sent_as_a_header(
    page: sync_api.Page, trained_store, tmp_path: Path
) -> None:
    running = start_server(trained_store, tmp_path, "mlp", FRAUD_API_TOKEN=TOKEN)
    try:
        # The console's own files are public; the data behind them is not.
        assert httpx.get(f"{running.url}/ui/", timeout=10).status_code == 200
        assert httpx.get(f"{running.url}/model/info", timeout=10).status_code == 401
        headers: list[str | None] = []
        page.on(
            "request",
            lambda r: (
                headers.append(r.headers.get("authorization")) if r.method == "POST" else None
            ),
        )
        page.goto(f"{running.url}/")
        page.wait_for_selector("#token-dialog[open]")
        page.fill("#token-input", "wrong")
        page.click("#token-form button")
        page.wait_for_selector("#token-error:not([hidden])")
        assert "refused" in page.text_content("#token-error")
        page.fill("#token-input", TOKEN)
        page.click("#token-form button")
        page.wait_for_selector("body[data-ready='1']")
        assert "fraud-mlp" in page.text_content("#model-badge")
        assert page.evaluate("sessionStorage.getItem('fraud-console-token')") == TOKEN
        page.click("#score-submit")
        page.wait_for_selector("#score-result:not([hidden])")
        # The example scored on opening and the click: every call carried the token.
        assert len(headers) == 2 and set(headers) == {f"Bearer {TOKEN}"}
        page.reload()  # asked once per tab: the reload uses the stored token
        page.wait_for_selector("body[data-ready='1']")
        assert not page.locator("#token-dialog").evaluate("d => d.open")
    finally:
        running.server.stop()


def test_without_shap_the_console_still_scores_and_says_why(
    page: sync_api.Page, trained_store, tmp_path: Path
) -> None:
    """An image built with ``EXPLANATIONS=0``: here a shap that cannot be imported."""
    missing = tmp_path / "no-shap" / "shap"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('No module named shap (test)')\n")
    pythonpath = os.pathsep.join(filter(None, [str(missing.parent), os.environ.get("PYTHONPATH")]))
    running = start_server(trained_store, tmp_path, "mlp", PYTHONPATH=pythonpath)
    try:
        open_console(page, running)  # the example is scored on opening
        assert page.text_content("#score-decision") in ("FRAUD", "OK")
        assert "EXPLANATIONS=0" in page.text_content("#score-reasons")
    finally:
        running.server.stop()
