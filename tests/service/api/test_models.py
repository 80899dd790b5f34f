"""``GET /models`` and ``GET /models/{name}``."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_lists_bundles_with_versions_working_points_and_metrics(client: TestClient) -> None:
    bundles = client.get("/models").json()
    assert [bundle["name"] for bundle in bundles] == ["events-test-ae", "jets-test-image-nae"]
    images = client.get("/models/jets-test-image-nae").json()
    assert images["default_version"] == 1
    version = images["versions"][0]
    assert (version["kind"], version["input_shape"]) == ("jet-image", [40, 40])
    assert [wp["name"] for wp in version["working_points"]] == ["eff_1e-1", "eff_1e-2"]
    assert version["metrics"] == {"test-signal": {"auc": 0.5}}
    assert len(version["sha256"]) == 64


def test_an_unknown_bundle_is_a_404(client: TestClient) -> None:
    response = client.get("/models/nope")
    assert response.status_code == 404 and "nope" in response.json()["error"]
