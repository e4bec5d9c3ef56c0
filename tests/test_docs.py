"""The documentation cannot drift from the code: its snippets run against a real server, and
its generated pages match what the service really reads and serves."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from fraud_detection.settings import ENVIRONMENT_VARIABLES
from fraud_detection.settings import ServingSettings
from tests.conftest import REPO
from tests.conftest import RunningServer
from tests.conftest import start_server

DOCS = REPO / "docs"
#: Pages whose shell and Python snippets are executed against a running server.
EXECUTED_PAGES = ("quickstart.md", "client.md", "review-queue.md")
SKIP_MARK = "<!-- docs-test: skip"
FENCE = re.compile(r"(?P<before>[^\n]*)\n```(?P<lang>bash|python)\n(?P<code>.*?)\n```", re.S)


def snippets(page: str) -> list[tuple[str, str]]:
    """(language, code) of every bash/python block not marked to skip."""
    text = "\n" + (DOCS / page).read_text()
    return [
        (m["lang"], m["code"])
        for m in FENCE.finditer(text)
        if not m["before"].startswith(SKIP_MARK)
    ]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_pages", DOCS / "gen_pages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docs_server(trained_store: Path, tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    running = start_server(trained_store, tmp_path_factory.mktemp("docs_serve"), "mlp")
    yield running
    running.server.stop()


def run_snippet(lang: str, code: str, server: RunningServer) -> subprocess.CompletedProcess[str]:
    code = code.replace("http://localhost:3000", server.url)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    argv = (
        ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    )
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("page", EXECUTED_PAGES)
def test_page_snippets_run_against_a_real_server(page: str, docs_server: RunningServer) -> None:
    blocks = snippets(page)
    assert blocks, f"{page} has no runnable snippets"
    for lang, code in blocks:
        done = run_snippet(lang, code, docs_server)
        assert done.returncode == 0, f"{page} snippet failed:\n{code}\n{done.stderr[-2000:]}"
        assert done.stdout.strip(), f"{page} snippet printed nothing:\n{code}"


def test_quickstart_curl_answers_as_the_page_says(docs_server: RunningServer) -> None:
    (curl,) = [c for lang, c in snippets("quickstart.md") if "/predict" in c and lang == "bash"]
    results = json.loads(run_snippet("bash", curl, docs_server).stdout)
    assert [r["is_fraud"] for r in results] == [False, True], "the page promises this answer"
    assert all(r["model"] == "fraud-mlp" for r in results)


def test_skipped_snippets_are_only_the_ones_that_need_another_setup() -> None:
    skipped = [
        line
        for page in EXECUTED_PAGES
        for line in (DOCS / page).read_text().splitlines()
        if line.startswith(SKIP_MARK)
    ]
    assert len(skipped) == 2, skipped  # `make serve` itself, and a client with a token


def test_configuration_page_lists_exactly_the_variables_the_service_reads() -> None:
    class Recording(dict):
        def __init__(self) -> None:
            super().__init__()
            self.read: set[str] = set()

        def get(self, key, default=None):  # type: ignore[override]
            self.read.add(key)
            return default

        def __contains__(self, key: object) -> bool:
            self.read.add(str(key))
            return False

    environ = Recording()
    ServingSettings.from_env(environ)
    assert environ.read == set(ENVIRONMENT_VARIABLES)
    page = load_generator().configuration_page()
    for name, (field, _) in ENVIRONMENT_VARIABLES.items():
        assert f"`{name}`" in page
        if field is not None:  # the default shown is the dataclass's, e.g. FRAUD_MAX_ROWS
            value = ServingSettings()
            for part in field.split("."):
                value = getattr(value, part)
            if isinstance(value, int) and not isinstance(value, bool):
                assert f"| `{name}` | `{value}` |" in page


def test_openapi_page_is_the_document_the_server_serves(
    trained_store: Path, docs_server: RunningServer
) -> None:
    generated = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, runpy; g = runpy.run_path('docs/gen_pages.py', run_name='gen'); "
            "print(json.dumps(g['openapi_document']()))",
        ],
        cwd=REPO,
        env={**os.environ, "BENTOML_HOME": str(trained_store)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert generated.returncode == 0, generated.stderr[-2000:]
    served = httpx.get(f"{docs_server.url}/docs.json", timeout=10).json()
    assert json.loads(generated.stdout.strip().splitlines()[-1]) == served
