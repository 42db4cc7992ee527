"""The REST API and MCP on the Streamlit server's own port (``core.api.embedded``), against a real
``streamlit run app.py``: one process, one runtime, the chat's own memories; and the server still
starts when the settings are invalid. (The MCP tools themselves are tested in tests/test_mcp.py,
the chat's memories through the browser in tests/test_browser.py.)"""

from __future__ import annotations

import httpx

from tests.streamlit_server import StreamlitServer
from tests.test_mcp import INIT, MCP_HEADERS, app_host, app_server, connect, ok, run  # noqa: F401 - fixtures


def test_mem0s_client_on_the_app_port_sees_what_the_app_stored_and_back(app_host):
    from mem0 import MemoryClient

    _, key = app_host.new_account()

    async def add_through_the_app():
        async with connect(app_host.mcp, key) as client:
            return await ok(client, "add_memory", {"text": "Grows tomatoes on the balcony"})

    added = run(add_through_the_app)
    client = MemoryClient(api_key=key, host=app_host.base)  # http://127.0.0.1:PORT/api
    try:
        everything = client.get_all(filters={"user_id": "*"})["results"]
        assert [m["memory"] for m in everything] == ["Grows tomatoes on the balcony"]
        assert everything[0]["id"] == added["results"][0]["id"]
        client.add([{"role": "user", "content": "Prefers trains to planes"}], infer=False)
    finally:
        client.client.close()

    async def search_through_the_app():
        async with connect(app_host.mcp, key) as mcp:
            return await ok(mcp, "search_memories", {"query": "travel by train"})

    assert run(search_through_the_app)["results"][0]["memory"] == "Prefers trains to planes"


def test_the_app_keeps_its_own_session_routes_under_api(app_server):
    r = httpx.get(app_server.base + "/api/session/me", timeout=30)
    assert r.status_code == 401 and r.json() == {"error": "Not signed in."}  # the app's route, not the API's
    assert httpx.get(app_server.base + "/api/v1/ping/", timeout=30).status_code == 401  # the mounted API
    assert "optimus_api_requests_total" in httpx.get(app_server.base + "/metrics", timeout=30).text


def test_with_invalid_settings_the_app_starts_and_api_and_mcp_answer_503(tmp_path):
    server = StreamlitServer(tmp_path, OPTIMUS_STORAGE="cloud")
    try:
        server.start()
        with httpx.Client(timeout=30) as c:
            api = c.get(server.base + "/api/v1/ping/", headers={"Authorization": "Token om_" + "C" * 43})
            mcp = c.post(server.base + "/mcp", json=INIT, headers={**MCP_HEADERS,
                                                                   "Authorization": "Bearer om_" + "C" * 43})
            page = c.get(server.base + "/")
    finally:
        server.stop()
    for r in (api, mcp):
        assert r.status_code == 503, r.text
        assert r.json()["error_id"] == r.headers["x-error-id"]
        assert "OPTIMUS_STORAGE" not in r.text  # the reason is for the operator: the page and the log say it
    assert page.status_code == 200
    assert f"error {api.json()['error_id']}" in server.log.read_text()
