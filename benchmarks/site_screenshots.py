"""Screenshots of the built documentation site's home page, wide and narrow, in headless Chromium.

    make docs && python -m benchmarks.site_screenshots

Serves ``site/`` on a loopback port and writes ``docs/site-home-wide.png`` (1280 x 900) and
``docs/site-home-narrow.png`` (390 x 844, a phone). Needs Debian's ``chromium``. The site loads
Mermaid from unpkg, as a reader's browser does; without internet, pass the same file with
``--mermaid-js`` (``npm pack mermaid@11``, then ``package/dist/mermaid.min.js``) and the
request is answered from it.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
WINDOWS = {"wide": (1280, 900), "narrow": (390, 844)}


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=REPO / "site")
    parser.add_argument("--output-dir", type=Path, default=REPO / "docs")
    parser.add_argument("--mermaid-js", type=Path, help="local mermaid.min.js for unpkg's")
    args = parser.parse_args(argv)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(args.site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    written = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            for name, (width, height) in WINDOWS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                if args.mermaid_js:
                    page.route(
                        "https://unpkg.com/mermaid@*/**",
                        lambda route: route.fulfill(
                            path=str(args.mermaid_js), content_type="text/javascript"
                        ),
                    )
                page.goto(url, wait_until="networkidle")
                page.wait_for_timeout(3000)  # Mermaid renders into a closed shadow root
                out = args.output_dir / f"site-home-{name}.png"
                page.screenshot(path=str(out), full_page=False)
                written.append(out)
                print(out)
            browser.close()
    finally:
        server.shutdown()
    return written


if __name__ == "__main__":
    main()
