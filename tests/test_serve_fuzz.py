"""No 500 is reachable from outside the server, and an error never breaks the connection after it."""
import json
import string

import httpx
import pytest
from conftest import RunningServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HUGE_IDS = [2**63 - 1, 2**63, 2**64, 10**30]


@pytest.mark.parametrize("face_id", HUGE_IDS)
@pytest.mark.parametrize("route", ["/api/faces/{}", "/api/faces/{}/similar", "/api/faces/{}/thumbnail",
                                   "/api/rating/faces/{}"])
def test_ids_past_sqlites_integers_are_404(client, route, face_id):
    response = client.get(route.format(face_id))
    assert response.status_code == 404 and response.json()["status"] == 404


@pytest.mark.parametrize("body", [
    '{"rater": "a", "pair": 1e400, "left": "x", "right": "y", "answer": "left"}',
    '{"rater": "a", "pair": -Infinity, "left": "x", "right": "y", "answer": "left"}',
    '{"rater": "a", "pair": NaN, "left": "x", "right": "y", "answer": "left"}',
    '{"rater": "a", "pair": 1.5, "left": "x", "right": "y", "answer": "left"}',
    '{"rater": {"a": 1}, "pair": 0, "left": "x", "right": "y", "answer": "left"}',
    '{"rater": ["a"], "pair": 0, "left": "x", "right": "y", "answer": "left"}',
    "[" * 100_000,
    '{"a": ' * 50_000,
])
def test_bad_votes_are_400(client, body):
    response = client.post("/api/rating/vote", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert "rater" in response.json()["error"]


def test_an_unexpected_error_is_a_json_500_on_a_connection_that_stays_open():
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from fecsearch.serve.guards import ContainErrors

    async def broken(request):
        raise RuntimeError("a bug")

    async def fine(request):
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/broken", broken), Route("/fine", fine)], middleware=[Middleware(ContainErrors)])
    server = RunningServer(app)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as c:  # one keep-alive connection
            for _ in range(3):
                response = c.get("/broken")
                assert response.status_code == 500 and response.json()["error"] == "internal error: RuntimeError"
                assert c.get("/fine").json() == {"ok": True}
    finally:
        server.stop()


ROUTES = ["/api/health", "/api/info", "/api/search", "/api/faces/{id}", "/api/faces/{id}/similar",
          "/api/faces/{id}/thumbnail", "/api/summary", "/api/rating", "/api/rating/next", "/api/rating/vote",
          "/api/rating/faces/{id}", "/", "/rate", "/static/{text}", "/api/{text}"]
PARAMS = ["k", "face", "size", "n", "all", "cropped", "rater"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["rater", "pair", "left", "right", "answer", "x"]), inner, max_size=6),
    max_leaves=12)


@st.composite
def requests(draw):
    route = draw(st.sampled_from(ROUTES))
    path = route.format(id=draw(st.one_of(st.integers(min_value=0, max_value=2**70),
                                          st.sampled_from(HUGE_IDS))),
                        text=draw(st.text(string.ascii_letters + string.digits + "-._~%", max_size=12)))
    params = draw(st.dictionaries(st.sampled_from(PARAMS), st.one_of(
        st.integers(min_value=-2**70, max_value=2**70).map(str), st.text(max_size=12)), max_size=4))
    method = draw(st.sampled_from(["GET", "POST"]))
    kind = draw(st.sampled_from(["none", "json", "bytes", "image"]))
    headers, content = {}, None
    if kind == "json":
        headers["Content-Type"] = "application/json"
        content = json.dumps(draw(json_values), allow_nan=True)
    elif kind in ("bytes", "image"):
        headers["Content-Type"] = draw(st.sampled_from(["image/jpeg", "image/png", "application/octet-stream",
                                                        "multipart/form-data", "multipart/form-data; boundary=x",
                                                        "text/plain"]))
        content = draw(st.binary(max_size=300))
    return method, path, params, headers, content


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(request=requests())
def test_no_request_gets_a_500(client, request):
    """Property: whatever the route, ids, parameters, method, content type and body, the answer is
    not a server error, errors are JSON, and the connection still answers the next request."""
    method, path, params, headers, content = request
    response = client.request(method, path, params=params, headers=headers, content=content)
    assert response.status_code < 500, (method, path, params, response.text[:300])
    if response.status_code >= 400 and path.startswith("/api/"):
        assert response.json()["status"] == response.status_code
    assert client.get("/api/health").status_code == 200
