"""The live dashboard: one HTML page plus its script and style, served by the parameter server.

The page is static and talks only to the server's open JSON endpoints (`/status` and
`/api/history?since=T`), so it needs no template rendering, no CDN and no extra auth: the
machines that run training are often offline, and a dashboard that cannot reach a CDN shows
nothing. The parameter server's app factory registers `dashboard_bp`.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC_DIR = Path(__file__).resolve().parent / "static"

dashboard_bp = Blueprint(
    "dashboard",
    __name__,
    static_folder=str(STATIC_DIR),
    static_url_path="/dashboard/static",
)


@dashboard_bp.get("/dashboard")
def dashboard() -> Response:
    """The dashboard page; its script polls the JSON endpoints and redraws the plots."""
    response = send_from_directory(STATIC_DIR, "dashboard.html")
    # The page is tiny and changes with the code; never let a browser keep an old copy.
    response.headers["Cache-Control"] = "no-store"
    return response
