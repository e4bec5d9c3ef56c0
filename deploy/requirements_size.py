"""Total wheel size of a locked requirements file (Linux x86-64, CPython 3.11), from PyPI.

    python deploy/requirements_size.py BENTO_DIR/env/python/requirements.txt
    python deploy/requirements_size.py --resolve "bentoml==1.4.40 torch==2.13.0"

Sizes come from PyPI's simple JSON API (PEP 691); ``--resolve`` locks the specs first with
``pip install --dry-run --report``. Smaller images pull and start faster on Cloud Run.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

PLATFORM_TAGS = ("manylinux", "linux_x86_64")


def locked_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;\\]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


def resolve(specs: list[str]) -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        platforms = [f"--platform=manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 34, 35)]
        # --isolated: PyPI's own wheels, not a local wheelhouse or constraints from pip config.
        subprocess.run(
            [sys.executable, "-m", "pip", "--isolated", "install", "--quiet", "--dry-run",
             "--ignore-installed", "--index-url", "https://pypi.org/simple",
             "--cert", "/etc/ssl/certs/ca-certificates.crt", "--only-binary=:all:",
             "--python-version", "3.11", *platforms, "--platform=manylinux2014_x86_64",
             "--target", tmp, "--report", str(report), *specs],
            check=True,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}


def linux_wheel(filename: str) -> bool:
    if not filename.endswith(".whl"):
        return False
    if filename.endswith("-none-any.whl"):
        return True
    python_ok = any(tag in filename for tag in ("cp311", "abi3", "py3-none"))
    return python_ok and "x86_64" in filename and any(t in filename for t in PLATFORM_TAGS)


def wheel_size(name: str, version: str) -> int:
    """Bytes of the wheel pip would pick on Linux x86-64 for CPython 3.11."""
    request = urllib.request.Request(
        f"https://pypi.org/simple/{re.sub(r'[-_.]+', '-', name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    files = json.load(urllib.request.urlopen(request, timeout=30))["files"]
    prefix = f"{re.sub(r'[-_.]+', '_', name)}-{version}-".lower()
    candidates = [
        f for f in files if f["filename"].lower().startswith(prefix) and linux_wheel(f["filename"])
    ]
    if not candidates:
        raise LookupError(f"no Linux x86-64 wheel for {name}=={version}")
    return min(f["size"] for f in candidates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements", nargs="?", type=Path)
    parser.add_argument("--resolve", help="space-separated specs to lock first")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    pins = resolve(args.resolve.split()) if args.resolve else locked_pins(args.requirements)
    sizes = {f"{n}=={v}": wheel_size(n, v) for n, v in pins.items()}
    total = sum(sizes.values())
    print(f"{len(sizes)} wheels, {total / 1e6:.0f} MB in total")
    for spec, size in sorted(sizes.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {size / 1e6:8.1f} MB  {spec}")


if __name__ == "__main__":
    main()
