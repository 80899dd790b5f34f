"""The documentation pages work offline and the OpenAPI document describes every route."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient


def test_the_pages_load_their_assets_from_the_service(client: TestClient) -> None:
    for page, asset in [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]:
        html = client.get(page).text
        assert f"/docs/assets/{asset}" in html
        assert "cdn." not in html and "fonts.googleapis" not in html
        script = client.get(f"/docs/assets/{asset}")
        assert script.status_code == 200 and len(script.content) > 100_000


def test_documentation_requests_are_counted_under_their_own_routes(
    client: TestClient, metric_value: Callable[..., float]
) -> None:
    client.get("/openapi.json")
    client.get("/docs")
    client.get("/docs/assets/swagger-ui.css")
    metrics = client.get("/metrics").text
    for endpoint in ("/openapi.json", "/docs", "/docs/assets"):
        assert metric_value(metrics, "nae_requests_total", endpoint=endpoint, status="200") == 1
    assert metric_value(metrics, "nae_requests_total", endpoint="unmatched", status="200") == 0


def test_every_route_documents_its_errors_and_the_scoring_routes_their_bodies(
    client: TestClient,
) -> None:
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            errors = {code for code in operation["responses"] if code >= "400"}
            assert "500" in errors, (method, path)
            for code in errors:
                schema = operation["responses"][code]["content"]["application/json"]["schema"]
                assert schema["$ref"].endswith(("/ErrorResponse", "/Readiness")), (path, code)
    for path in ("/score", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        body = document["paths"][path]["post"]["requestBody"]["content"]
        assert "example" in body["application/json"]  # made from a loaded bundle
    assert "HTTPValidationError" not in str(document)


def test_the_example_request_is_answered(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    score = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    assert client.post("/score", json=score["example"]).status_code == 200
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    name = infer["parameters"][0]["example"]
    example = infer["requestBody"]["content"]["application/json"]["example"]
    assert client.post(f"/v2/models/{name}/infer", json=example).status_code == 200
