"""The API docs pages work without internet: Swagger UI and ReDoc come from a package, not a CDN."""

from __future__ import annotations


def test_docs_page_loads_swagger_ui_from_the_server_itself(course):
    page = course.client.get("/api/v1/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in page.text and "/api/v1/openapi.json" in page.text
    assert "cdn." not in page.text and "https://" not in page.text.split("<body>")[0]
    for asset, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css")):
        r = course.client.get(f"/api/v1/docs/assets/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 10_000, asset
    assert course.client.get("/api/v1/docs/oauth2-redirect").status_code == 200
    redoc = course.client.get("/api/v1/redoc")
    assert redoc.status_code == 200 and "/api/v1/docs/assets/redoc.standalone.js" in redoc.text
    assert "https://" not in redoc.text  # no CDN, no web fonts
    assert course.client.get("/api/v1/docs/assets/redoc.standalone.js").status_code == 200


def test_docs_routes_are_not_api_operations(course):
    paths = course.client.get("/api/v1/openapi.json").json()["paths"]
    assert not any(p.startswith("/api/v1/docs") for p in paths)
