"""Figures read from the benchmarks' results files, for the docs pages and the README.

A page never types a measured number: it names a results file and a path into it
(``{{ fig("serving-vm", "targets.0.measured") }}`` through mkdocs-macros, `docs/macros.py`), and
the README's headline table is generated from the same files (`benchmarks.headline`). A figure
whose file was measured on another served model than ``make serve`` trains today, or before
the code it measures last changed, says so next to it: `Results.staleness`.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
from dataclasses import dataclass
from typing import Any

from benchmarks.provenance import REPO
from benchmarks.provenance import RESULTS

#: The code each results file measures, for "changed since it was measured". A file not
#: named here measures the serving path.
SERVING_PATH = ("service.py", "fraud_detection", "configs", "training")
CODE_PATHS: dict[str, tuple[str, ...]] = {
    "quality": ("training", "configs", "benchmarks/quality.py"),
    "backfill-vm": ("backfill", "fraud_detection/scorer.py", "fraud_detection/stored_models.py"),
    "graph-cost-vm": ("training", "configs", "fraud_detection/scorer.py"),
}


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)


@functools.cache
def _known_commit(commit: str) -> bool:
    return _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0


@functools.cache
def _changed_since(commit: str, paths: tuple[str, ...]) -> bool:
    """Whether `paths` differ between `commit` and the working tree's HEAD."""
    return _git("diff", "--quiet", commit, "HEAD", "--", *paths).returncode == 1


@functools.cache
def current_architecture(kind: str) -> str:
    from benchmarks.provenance import current_architecture as compose

    return compose(kind)


@dataclass(frozen=True)
class Provenance:
    """Where a results file's figures come from."""

    commit: str  # short hash ("+dirty": the code differed from it); "" when unknown
    commit_recorded: bool  # False: the run recorded none, `commit` is the one that added the file
    date: str  # YYYY-MM-DD
    machine: str
    command: str
    model: str  # the served model's tag; "" when not recorded
    architecture: str  # "" when not recorded

    @property
    def cited_commit(self) -> str:
        if not self.commit:
            return "commit unknown"
        if self.commit_recorded:
            return f"commit `{self.commit}`"
        return f"committed in `{self.commit}` (the run recorded no commit)"


@dataclass(frozen=True)
class Results:
    """One results file, ``benchmarks/results/<stem>.json``."""

    stem: str
    data: dict[str, Any]

    @classmethod
    @functools.cache
    def load(cls, stem: str) -> Results:
        path = RESULTS / f"{stem}.json"
        if not path.exists():
            raise FileNotFoundError(f"no results file {path.relative_to(REPO)}")
        return cls(stem, json.loads(path.read_text()))

    def get(self, path: str) -> Any:
        """The value at a dotted `path` (``a.b.0.c``: list items by index; ``a.*.c``: the
        list of ``c`` in every item of ``a``; ``a.?k=v&j=w.c``: ``c`` of the one item of
        ``a`` whose ``k`` is ``v`` and ``j`` is ``w``)."""
        return self._get(self.data, path.split("."), path)

    def _get(self, value: Any, parts: list[str], path: str) -> Any:
        parts = list(parts)
        i = 0
        while i < len(parts):
            part = parts[i]
            # A key with dots in it ("recall_at_0.1pct_fpr", "scipy.libs" beside "scipy"): the
            # longest run of parts that names a key.
            if isinstance(value, dict):
                for j in range(len(parts), i + 1, -1):
                    if ".".join(parts[i:j]) in value:
                        parts[i:j] = [".".join(parts[i:j])]
                        part = parts[i]
                        break
            i += 1
            if part.startswith("?"):  # ?k=v&k=v: the one list item with those fields
                wanted = dict(pair.split("=", 1) for pair in part[1:].split("&"))
                matches = [x for x in value if all(str(x.get(k)) == v for k, v in wanted.items())]
                if len(matches) != 1:
                    raise KeyError(f"{self.stem}.json: {len(matches)} items match {part!r}")
                value = matches[0]
                continue
            if part == "*":
                items = value if isinstance(value, list) else list(value.values())
                return [self._get(item, parts[i:], path) for item in items]
            try:
                value = value[int(part)] if isinstance(value, list) else value[part]
            except (KeyError, IndexError, ValueError, TypeError) as e:
                raise KeyError(f"{self.stem}.json has no {path!r} (at {part!r})") from e
        return value

    @property
    def provenance(self) -> Provenance:
        block = self.data.get("provenance") or {}
        model = block.get("served_model") or {}
        date = block.get("date") or self.data.get("date") or self.data.get("started")
        date = date or self.data.get("when") or ""
        commit = block.get("commit") or self.data.get("commit") or ""
        recorded = bool(commit)
        if not commit:
            # Older files carry no commit: the commit that added the file stands in for it.
            found = _git("log", "-1", "--format=%h", "--", f"benchmarks/results/{self.stem}.json")
            commit = found.stdout.strip()
        machine = block.get("machine") or self.data.get("machine") or ""
        if isinstance(machine, dict):  # the serving harness's older form
            machine = (
                f"{machine.get('logical_cpus')} logical CPUs ({machine.get('cpu')}), "
                f"Python {machine.get('python')}"
            )
        legacy_model = self.data.get("model") if isinstance(self.data.get("model"), str) else ""
        return Provenance(
            commit=commit,
            commit_recorded=recorded,
            date=str(date)[:10],
            machine=str(machine),
            command=str(block.get("command") or self.data.get("command") or ""),
            model=str(model.get("tag") or legacy_model or ""),
            architecture=str(model.get("architecture") or ""),
        )

    def staleness(self, kind: str = "mlp") -> str | None:
        """Why a figure from this file may not describe today's release, or None."""
        p = self.provenance
        if p.model == "none":
            architecture_note = None
        elif not p.architecture:
            architecture_note = "the served model was not recorded"
        elif p.architecture != current_architecture(kind):
            architecture_note = f"on an older served model ({p.architecture})"
        else:
            architecture_note = None
        base = p.commit.split("+")[0]
        code_note = None
        paths = CODE_PATHS.get(self.stem, SERVING_PATH)
        if base and _known_commit(base) and _changed_since(base, paths):
            code_note = f"the code it measures has changed since `{base}`"
        notes = [n for n in (architecture_note, code_note) if n]
        return "; ".join(notes) if notes else None


def formatted(value: Any, fmt: str = "") -> str:
    """`value` with a format spec; ``,`` groups thousands."""
    if isinstance(value, (int, float)) and fmt:
        return format(value, fmt)
    return str(value)


REDUCTIONS = {
    "median": statistics.median,
    "min": min,
    "max": max,
    "len": len,
    "sum": sum,
    "join": lambda items: " and ".join(map(str, items)),
}


def value(stem: str, path: str, reduce: str | None = None) -> Any:
    """The raw value at `path`, reduced (``median`` of a ``*`` path's list, ...)."""
    found = Results.load(stem).get(path)
    return REDUCTIONS[reduce](found) if reduce else found


def figure(
    stem: str,
    path: str,
    fmt: str = "",
    reduce: str | None = None,
    kind: str = "mlp",
    note: bool = True,
) -> str:
    """One figure as Markdown, with its staleness note when there is one."""
    results = Results.load(stem)
    text = formatted(value(stem, path, reduce), fmt)
    why = results.staleness(kind) if note else None
    if not why:
        return text
    p = results.provenance
    return f"{text} (_measured {p.date or 'on an unrecorded date'}: {why}_)"


def source(stem: str) -> str:
    """A sentence naming a results file's provenance, for under a table of its figures."""
    r = Results.load(stem)
    p = r.provenance
    parts = [f"`benchmarks/results/{stem}.json`", p.date or "date not recorded"]
    if p.commit:
        parts.append(p.cited_commit)
    if p.machine:
        parts.append(p.machine)
    if p.model and p.model != "none":
        parts.append(f"model `{p.model}`" + (f" ({p.architecture})" if p.architecture else ""))
    text = "Source: " + ", ".join(parts)
    if p.command:
        text += f"; command `{p.command}`"
    why = r.staleness()
    return text + (f". **Not current:** {why}." if why else ".")
