"""Pages written at ``mkdocs build`` time (mkdocs-gen-files), so they cannot drift from the code.

- ``configuration.md``: every ``FRAUD_*`` variable `ServingSettings.from_env` reads, with the
  default the dataclass holds and the meaning from `ENVIRONMENT_VARIABLES`.
- ``reference/openapi.md`` and ``reference/openapi.json``: the OpenAPI document the service
  serves at ``/docs.json`` (BentoML's, with the service's correction), built from
  ``service.FraudDetector``; importing it needs the served model in ``BENTOML_HOME``
  (``make docs`` trains it first when missing).
- ``results/``: the benchmark results (``benchmarks/results/*.md``, ``*.png``) the Performance,
  Monitoring and Model quality pages link to.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fraud_detection.settings import ENVIRONMENT_VARIABLES
from fraud_detection.settings import ServingSettings

REPO = Path(__file__).resolve().parents[1]


def default_of(field: str | None) -> str:
    if field is None:
        return "unset"
    value: Any = ServingSettings()
    for part in field.split("."):
        value = getattr(value, part)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or '""'
    return str(value)


def configuration_page() -> str:
    rows = [
        f"| `{name}` | `{default_of(field)}` | {meaning} |"
        for name, (field, meaning) in ENVIRONMENT_VARIABLES.items()
    ]
    return "\n".join(
        [
            "# Configuration",
            "",
            "The service reads these variables once, at start-up "
            "(`fraud_detection.settings.ServingSettings.from_env`); a bad value stops it with "
            "the variable named. This page is generated from the code when the site is built.",
            "",
            "| variable | default | meaning |",
            "|---|---|---|",
            *rows,
            "",
            "Training is configured by Hydra: `configs/train.yaml` and its groups "
            "(see [Training](training.md)); `python -m training --cfg job` prints the "
            "resolved configuration.",
            "",
        ]
    )


def openapi_document() -> dict[str, Any]:
    if str(REPO) not in sys.path:  # service.py sits at the repository root, not in a package
        sys.path.insert(0, str(REPO))
    import service

    return service.served_openapi(service.FraudDetector.openapi_spec.asdict())


def schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else schema.get("type", "")


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in sorted(document.get("paths", {}).items()):
        for method, operation in methods.items():
            if isinstance(operation, dict):
                yield path, method.upper(), operation


def openapi_page(document: dict[str, Any]) -> str:
    info = document.get("info", {})
    lines = [
        "# OpenAPI",
        "",
        f"The document the service serves at `GET /docs.json` ({info.get('title', '')} "
        f"{info.get('version', '')}), generated from `service.FraudDetector` when the site is "
        "built: [openapi.json](openapi.json). A running server shows it interactively at "
        "`/docs`.",
        "",
        "| method | path | summary | answers |",
        "|---|---|---|---|",
    ]
    for path, method, operation in operations(document):
        summary = (operation.get("summary") or operation.get("description") or "").split("\n")[0]
        answers = ", ".join(sorted(str(code) for code in operation.get("responses", {})))
        lines.append(f"| {method} | `{path}` | {summary} | {answers} |")
    lines += ["", "## Schemas", ""]
    for name, schema in sorted(document.get("components", {}).get("schemas", {}).items()):
        lines += [f"### {name}", "", "```json", json.dumps(schema, indent=2), "```", ""]
    return "\n".join(lines)


def main() -> None:
    """Write the generated pages into the site being built."""
    import mkdocs_gen_files

    with mkdocs_gen_files.open("configuration.md", "w") as page:
        page.write(configuration_page())

    document = openapi_document()
    with mkdocs_gen_files.open("reference/openapi.json", "w") as out:
        out.write(json.dumps(document, indent=2))
    with mkdocs_gen_files.open("reference/openapi.md", "w") as page:
        page.write(openapi_page(document))

    results = sorted((REPO / "benchmarks" / "results").iterdir())
    for result in results:
        if result.suffix in (".md", ".png"):
            with mkdocs_gen_files.open(f"results/{result.name}", "wb") as out:
                out.write(result.read_bytes())
    with mkdocs_gen_files.open("results/index.md", "w") as page:
        page.write(results_index(results))


def results_index(results: list[Path]) -> str:
    """One row per results file: where it was measured, on what, and whether it is current."""
    from benchmarks.figures import Results

    lines = [
        "# Benchmark results",
        "",
        "One file per benchmark and machine (`-vm`: this project's 2-core CPU VM; `-h100`: one "
        "NVIDIA H100), each replaced by its benchmark's next run; earlier runs are in git "
        "history. The JSON beside each table in `benchmarks/results/` holds every figure the "
        "pages render. *Not current*: measured on another served model than today's configs "
        "train, or before the code it measures changed.",
        "",
        "| results | measured | commit | served model | command | current |",
        "|---|---|---|---|---|---|",
    ]
    tables = {r.stem for r in results if r.suffix == ".md"}
    for result in results:
        if result.suffix != ".json":
            continue
        found = Results.load(result.stem)
        p = found.provenance
        name = f"[{result.stem}]({result.stem}.md)" if result.stem in tables else result.stem
        why = found.staleness()
        lines.append(
            f"| {name} | {p.date} | {p.cited_commit} | {p.model or '?'} "
            f"| `{p.command or '?'}` | {'yes' if not why else 'no: ' + why} |"
        )
    return "\n".join(lines) + "\n"


# mkdocs-gen-files runs this file with runpy.run_path; tests import its functions without it.
if __name__ in ("__main__", "<run_path>"):
    main()
