from fastapi.testclient import TestClient

from tests.conftest import World, auth


def test_runtime_list_empty(client: TestClient, world: World) -> None:
    token = world.token()
    r = client.get("/api/runtimes", headers=auth(token, "acme"))
    assert r.status_code == 200
    assert r.json() == []
