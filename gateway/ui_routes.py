"""The dashboard: `GET /ui` serves the page, `GET /ui/static/{name}` its assets.

The page is static; everything it shows comes from the admin JSON API, fetched by the
browser with the admin key the operator types in. So these routes need no key, and serve
only the dashboard's own files, read into memory once when the routes are added: a
request's name is looked up among them, never joined to a path, so no request can reach
another file.

Assets are not fingerprinted (there is no build step), so every answer carries an ETag and
`Cache-Control: no-cache`: the browser keeps its copy but asks each time, and an unchanged
file costs a 304 with no body. Every answer forbids framing, inline script and any origin
but the gateway's own (`CONTENT_SECURITY_POLICY`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from gateway import errors

UI_DIR = Path(__file__).parent / "ui"
INDEX = "index.html"

CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
"""What `/ui/static/` serves: the files of these kinds in `UI_DIR`, found when the routes are added."""

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
                           "frame-ancestors 'none'")
# form-action 'none': the login form is handled by script; were script ever to fail, the
# browser must not submit it and put the admin key in a URL.

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def read(cls, name: str, content_type: str) -> StaticFile:
        body = (UI_DIR / name).read_bytes()
        return cls(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def response(self, request: web.Request) -> web.Response:
        headers = {**SECURITY_HEADERS, "ETag": self.etag, "Cache-Control": "no-cache"}
        if _not_modified(self.etag, request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, headers={**headers, "Content-Type": self.content_type})


def _not_modified(etag: str, if_none_match: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags or "*" in tags


def add_routes(app: web.Application) -> None:
    """Serve the dashboard from `app`: `/ui`, `/ui/` and `/ui/static/{name}` (GET and HEAD)."""
    index = StaticFile.read(INDEX, "text/html; charset=utf-8")
    assets = {path.name: StaticFile.read(path.name, CONTENT_TYPES[path.suffix])
              for path in sorted(UI_DIR.iterdir()) if path.suffix in CONTENT_TYPES}

    async def page(request: web.Request) -> web.Response:
        return index.response(request)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = assets.get(name)
        if found is None:
            raise errors.not_found(f"No dashboard file '{name}'.")
        return found.response(request)

    app.router.add_get("/ui", page)
    app.router.add_get("/ui/", page)
    app.router.add_get("/ui/static/{name}", asset)
