"""Serving the dashboard: /ui and its static files, over real HTTP, no browser needed.

The browser tests (tests/test_ui.py) skip without Chromium; these always run.
"""

from __future__ import annotations

import re

import httpx

from tests.harness import Gateway


def test_the_page_is_served_at_ui_with_a_strict_content_security_policy(gateway: Gateway) -> None:
    for path in ("/ui", "/ui/"):
        page = httpx.get(f"{gateway.url}{path}")
        assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe" not in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Cache-Control"] == "no-cache"
        assert "<script>" not in page.text and " style=" not in page.text  # nothing inline for the policy to block
    assert httpx.get(f"{gateway.url}/ui", headers={"Authorization": "Bearer nobody"}).status_code == 200


def test_every_asset_the_page_and_its_modules_load_is_served_with_its_type(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.url}/ui").text
    wanted = set(re.findall(r'(?:src|href)="/ui/static/([^"]+)"', page))
    assert {"app.js", "app.css", "favicon.svg"} <= wanted
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    seen: set[str] = set()
    while wanted - seen:
        name = sorted(wanted - seen)[0]
        seen.add(name)
        asset = httpx.get(f"{gateway.url}/ui/static/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["Content-Type"] == types[name[name.rindex("."):]], name
        wanted |= set(re.findall(r'from "\./([^"]+)"', asset.text))  # an ES module's own imports
    assert {"api.js", "dom.js", "charts.js", "usage.js", "approvals.js"} <= seen


def test_assets_revalidate_with_their_etag(gateway: Gateway) -> None:
    for path in ("/ui", "/ui/static/app.js", "/ui/static/app.css"):
        first = httpx.get(f"{gateway.url}{path}")
        assert first.headers["Cache-Control"] == "no-cache" and first.headers["ETag"].startswith('"')
        again = httpx.get(f"{gateway.url}{path}", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == first.headers["ETag"]
        stale = httpx.get(f"{gateway.url}{path}", headers={"If-None-Match": '"something-older"'})
        assert stale.status_code == 200 and stale.content == first.content
        head = httpx.head(f"{gateway.url}{path}")
        assert head.status_code == 200 and head.content == b""


def test_only_the_dashboards_own_files_are_served(gateway: Gateway) -> None:
    for name in ("index.html", "nope.js", "ui_routes.py", "..%2Fui_routes.py", "%2e%2e%2f..%2fapp.py", "..%5Capp.py",
                 "..%2F..%2Fpyproject.toml", "app.js%00.py"):
        missing = httpx.get(f"{gateway.url}/ui/static/{name}")
        assert missing.status_code == 404, name
        assert missing.json()["error"]["type"] == "invalid_request_error", name
    assert httpx.post(f"{gateway.url}/ui").status_code == 405
