"""mkdocs-macros functions: pages render measured figures from ``benchmarks/results``.

- ``{{ fig(stem, path, fmt) }}``: the value at `path` in ``benchmarks/results/<stem>.json``,
  formatted, with a note when it was measured on another served model or older code;
- ``{{ source(stem) }}``: the file's commit, date, machine, command and served model;
- ``{{ headline() }}``: the README's headline table (`benchmarks.headline`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import figures  # noqa: E402
from benchmarks import headline  # noqa: E402


def define_env(env: Any) -> None:
    env.macro(figures.figure, "fig")
    env.macro(figures.source, "source")
    env.macro(headline.table, "headline")
