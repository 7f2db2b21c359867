"""``/docs`` and ``/redoc`` work on a network without internet (issue 18): every file they load is
served by the admin itself, and the pages need no inline script (the CSP allows none)."""

import re

import pytest


@pytest.mark.parametrize(("page", "needs"), [
    ("/docs", {"swagger-ui-bundle.js": "SwaggerUIBundle", "swagger-ui.css": ".swagger-ui",
               "api-docs.js": "SwaggerUIBundle({"}),
    ("/redoc", {"redoc.standalone.js": "Redoc"}),
])
def test_the_docs_pages_load_only_local_files(open_client, page, needs):
    r = open_client.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    html = r.text
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert references, references
    assert not [u for u in references if not u.startswith("/")], references
    assert "cdn" not in html.lower()
    assert "http" not in html.lower()
    assert not re.search(r"<script>|<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script: the CSP refuses it"
    loaded = {}
    for url in references:
        asset = open_client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
        loaded[url.rsplit("/", 1)[-1]] = asset.text if not url.endswith(".png") else ""
    for name, marker in needs.items():
        assert marker in loaded[name], name
    assert open_client.get("/openapi.json").json()["info"]["title"] == "ARCADE PACS admin"
