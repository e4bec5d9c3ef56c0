"""Total wheel size of a locked requirements file (Linux x86-64, CPython 3.11), from PyPI.

    python deploy/requirements_size.py BENTO_DIR/env/python/requirements.txt

Sizes come from PyPI's simple JSON API (PEP 691). Smaller images pull and start faster on Cloud Run.
"""

from __future__ import annotations

import argparse
import json
import re
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
    parser.add_argument("requirements", type=Path, help="a bento's env/python/requirements.txt")
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    pins = locked_pins(args.requirements)
    sizes = {f"{n}=={v}": wheel_size(n, v) for n, v in pins.items()}
    total = sum(sizes.values())
    print(f"{len(sizes)} wheels, {total / 1e6:.0f} MB in total")
    for spec, size in sorted(sizes.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {size / 1e6:8.1f} MB  {spec}")


if __name__ == "__main__":
    main()
