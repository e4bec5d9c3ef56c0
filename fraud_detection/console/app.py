"""`console_app`: the console's files and settings; `ConsoleRoutes`: ``/`` leads to it."""

from __future__ import annotations

from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.responses import JSONResponse
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from fraud_detection.prevalence import PRODUCTION_FRAUD_RATE
from fraud_detection.schema import FEATURE_NAMES
from fraud_detection.schema import NON_NEGATIVE_FEATURES

STATIC = Path(__file__).parent / "static"
#: Where the console lives; `ConsoleRoutes` sends ``GET /`` here.
CONSOLE_PATH = "/ui"
#: BentoML's OpenAPI page moves from ``/`` to here.
API_DOCS_PATH = "/docs"
FILES = {
    "": ("index.html", "text/html; charset=utf-8"),
    "console.js": ("console.js", "text/javascript; charset=utf-8"),
    "console.css": ("console.css", "text/css; charset=utf-8"),
}


@dataclass(frozen=True)
class ConsoleLimits:
    """What the page checks before it sends anything (the service's own limits)."""

    max_rows: int  # transactions per /predict
    explain_max_rows: int  # transactions per /explain
    max_body_bytes: int
    feature_limit: float


def plotly_js() -> Path:
    """plotly.min.js as shipped inside the ``plotly`` Python package."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def console_app(limits: ConsoleLimits, example: dict[str, float]) -> Starlette:
    """The console's pages (mounted at ``/ui``): public files, no data in them."""
    config: dict[str, Any] = {
        "features": list(FEATURE_NAMES),
        "non_negative": sorted(NON_NEGATIVE_FEATURES),
        "example": example,
        # The Model tab shows the card's metrics at this prevalence too.
        "base_fraud_rate": PRODUCTION_FRAUD_RATE,
        **asdict(limits),
    }

    def file(route: str) -> Callable[[Request], Awaitable[Response]]:
        name, media_type = FILES[route]

        async def send_file(request: Request) -> Response:
            return FileResponse(STATIC / name, media_type=media_type)

        return send_file

    async def settings(request: Request) -> JSONResponse:
        return JSONResponse(config)

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript; charset=utf-8")

    return Starlette(
        routes=[
            *(Route(f"/{route}", file(route), methods=["GET"]) for route in FILES),
            Route("/config.json", settings, methods=["GET"]),
            Route("/plotly.min.js", plotly, methods=["GET"]),
        ]
    )


class ConsoleRoutes:
    """ASGI middleware: ``GET /`` redirects to the console, ``GET /docs`` shows BentoML's
    OpenAPI page (served at ``/`` by BentoML; its assets and ``docs.json`` are relative)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path = scope["path"]
            if path in ("/", CONSOLE_PATH):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 307,
                        "headers": [(b"location", f"{CONSOLE_PATH}/".encode())],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
            if path == API_DOCS_PATH:
                scope = {**scope, "path": "/", "raw_path": b"/"}
        await self.app(scope, receive, send)
