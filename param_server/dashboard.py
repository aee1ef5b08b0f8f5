"""The live dashboard: one HTML page plus its script, style and the vendored uPlot chart library,
served by the parameter server; and a self-contained static copy of it for the run folder.

The page is static and talks only to the server's open JSON endpoints (`/status` and
`/api/history?since=T`), so it needs no template rendering, no CDN and no extra auth: the
machines that run training are often offline, and a dashboard that cannot reach a CDN shows
nothing. The parameter server's app factory registers `dashboard_bp`.

`render_static` inlines the same page, style, scripts and the data of one moment
(`window.OWTRAIN_SNAPSHOT`) into one HTML file that opens from disk after the servers are gone.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, send_from_directory

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_URL = "/dashboard/static/"
CLOSING_TAG = re.compile(r"</(script|style)", re.IGNORECASE)

dashboard_bp = Blueprint(
    "dashboard",
    __name__,
    static_folder=str(STATIC_DIR),
    static_url_path=STATIC_URL.rstrip("/"),
)


@dashboard_bp.get("/dashboard")
def dashboard() -> Response:
    """The dashboard page; its script polls the JSON endpoints and redraws the charts."""
    response = send_from_directory(STATIC_DIR, "dashboard.html")
    # The page is tiny and changes with the code; never let a browser keep an old copy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _asset(match: re.Match[str], tag: str) -> str:
    """The static file a <link>/<script> tag names, inlined as a <style>/<script> element."""
    # a "</script" or "</style" inside an inlined file would end the element early
    body = CLOSING_TAG.sub(r"<\\/\1", (STATIC_DIR / match.group(1)).read_text(encoding="utf-8"))
    return f"<{tag}>\n{body}\n</{tag}>"


def render_static(status: Mapping[str, Any], history: Mapping[str, Any], test: Mapping[str, Any] | None = None,
                  written: float | None = None) -> str:
    """The dashboard as one HTML file showing `status` (as `/status` answers), `history` (as
    `/api/history?since=0`) and, when known, `test` (`{"accuracy", "loss", "version"}` of the
    saved model); `written` (Unix time, default now) is shown as the copy's date."""
    page = (STATIC_DIR / "dashboard.html").read_text(encoding="utf-8")
    url = re.escape(STATIC_URL)
    page = re.sub(rf'<link rel="stylesheet" href="{url}([\w./-]+)">', lambda m: _asset(m, "style"), page)
    snapshot = {"status": status, "history": history, "test": test, "written": time.time() if written is None
                else written}
    # a JavaScript literal, not JSON.parse input: NaN and Infinity (a diverged loss) are valid there
    data = json.dumps(snapshot, default=str).replace("</", "<\\/")
    first = True

    def script(m: re.Match[str]) -> str:
        nonlocal first
        inline = _asset(m, "script")
        if first:  # the data goes before the first script: dashboard.js reads it when it loads
            first = False
            inline = f"<script>window.OWTRAIN_SNAPSHOT = {data};</script>\n{inline}"
        return inline

    return re.sub(rf'<script src="{url}([\w./-]+)"></script>', script, page)


def write_static(path: Path, status: Mapping[str, Any], history: Mapping[str, Any],
                 test: Mapping[str, Any] | None = None) -> Path:
    """Write `render_static(...)` to `path` atomically (a reader never sees half a page)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_static(status, history, test), encoding="utf-8")
    os.replace(tmp, path)
    return path
