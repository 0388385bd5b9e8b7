"""The web app's guards: Host names, cross-site writes (Origin, Referer, CSRF tokens), raters'
sessions and tokens (sign-in, one-time links, revocation), writes only as the signed-in rater,
and blind review. SQLite and, with ``HEADMAPS_TEST_POSTGRES_URL``, PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from evaluation.web import create_app
from evaluation.web.login import safe_next
from store import open_store
from store import tables as S
from tests._storedb import ENGINES, make_url
from tests._webauth import csrf, local_name, post_form, sign_in
from tests._webstore import fill

BASE = "http://127.0.0.1"


@pytest.fixture(params=ENGINES)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, int]]]:
    urls = make_url(request.param, tmp_path)
    url = next(urls)
    with open_store(url) as store:
        ids = fill(store)
    yield url, ids
    urls.close()


@pytest.fixture
def raters(db: tuple[str, dict[str, int]]) -> dict[str, object]:
    """Two raters, ann and bob: name -> NewRater (token and login code)."""
    with open_store(db[0]) as store:
        return {name: store.add_rater(name) for name in ("ann", "bob")}


def client_for(url: str, **kwargs: object) -> TestClient:
    return TestClient(create_app(url, **kwargs), base_url=BASE)


def n_ratings(url: str) -> int:
    with open_store(url) as store, store.read() as session:
        return session.scalar(select(func.count()).select_from(S.Rating)) or 0


# --- Host and Origin ---------------------------------------------------------------------------


def test_foreign_host_is_refused_loopback_and_allowed_names_are_served(
    db: tuple[str, dict[str, int]],
) -> None:
    url, _ = db
    with client_for(url, allowed_hosts=("rater.lab.example",)) as client:
        for host in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "rater.lab.example"):
            assert client.get("/models", headers={"host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            response = client.get("/api/models", headers={"host": host})
            assert response.status_code == 400 and "does not answer to host" in response.text, host
        # Writes too, before anything is read or stored.
        refused = client.post(
            "/api/ratings",
            json={"description_id": 1, "rater": "x", "label": "plausible"},
            headers={"host": "evil.example"},
        )
        assert refused.status_code == 400
    with client_for(url, host="10.1.2.3") as client:  # bound beyond loopback: its own address only
        assert client.get("/models", headers={"host": "10.1.2.3:8000"}).status_code == 200
        assert client.get("/models", headers={"host": "localhost"}).status_code == 400
    assert n_ratings(url) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "http://127.0.0.1:9999"},  # another port is another site
        {"origin": "null"},
        {"referer": "http://evil.example/page.html"},
    ],
)
def test_cross_site_writes_are_refused(db: tuple[str, dict[str, int]], headers: dict[str, str]) -> None:
    url, ids = db
    with client_for(url) as client:
        token = csrf(client, "/review")
        for path, data in (
            ("/review", {"description_id": ids["capital"], "label": "plausible", "rater": "x"}),
            ("/models/tiny/heads/1.2/ratings", {"description_id": ids["capital"], "label": "plausible"}),
            ("/review/name", {"rater": "x"}),
            ("/login", {"token": "hm_x"}),
            ("/logout", {}),
        ):
            response = client.post(path, data={**data, "csrf_token": token}, headers=headers)
            assert response.status_code == 403 and "cross-site request refused" in response.text, path
        api = client.post(
            "/api/ratings",
            json={"description_id": ids["capital"], "rater": "x", "label": "plausible"},
            headers=headers,
        )
        assert api.status_code == 403
    assert n_ratings(url) == 0


def test_same_origin_writes_pass(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    with client_for(url) as client:
        local_name(client, "ann")
        for headers in ({"origin": BASE}, {"origin": "http://127.0.0.1:80"}, {"referer": f"{BASE}/review"}):
            response = post_form(
                client, "/review", {"description_id": ids["capital"], "label": "plausible"}, headers=headers
            )
            assert response.status_code == 200, response.text
    assert n_ratings(url) == 3


# --- CSRF tokens -------------------------------------------------------------------------------


def test_every_form_post_needs_the_session_csrf_token(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    app = create_app(url)
    with TestClient(app, base_url=BASE) as client:
        # Every form route of the app (included routers are listed by their original router).
        routes = [
            r for top in app.routes for r in getattr(getattr(top, "original_router", None), "routes", [top])
        ]
        app_posts = {
            r.path
            for r in routes
            if "POST" in (getattr(r, "methods", None) or ()) and not r.path.startswith("/api/")
        }
        assert app_posts == {
            "/review",
            "/models/{model:path}/heads/{spec}/ratings",
            "/review/name",
            "/review/undo",
            "/review/skip",
            "/login",
            "/logout",
        }
        local_name(client, "ann")
        data = {"description_id": ids["capital"], "label": "plausible"}
        for path in (
            "/review",
            "/models/tiny/heads/1.2/ratings",
            "/review/name",
            "/review/undo",
            "/review/skip",
            "/login",
            "/logout",
        ):
            for token in (None, "forged", csrf(TestClient(client.app, base_url=BASE), "/login")):
                body = {**data, "rater": "ann", "token": "hm_x"}
                if token is not None:
                    body["csrf_token"] = token
                response = client.post(path, data=body, follow_redirects=False)
                assert response.status_code == 403 and "CSRF" in response.text, (path, token)
    assert n_ratings(url) == 0
    with open_store(url) as store:
        assert store.skipped_by("ann") == set()  # no forged skip either


def test_session_cookie_is_signed_httponly_and_strict(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    with client_for(url) as client:
        response = client.get("/review")
        cookie = response.headers["set-cookie"]
        assert (
            "httponly" in cookie.lower()
            and "samesite=strict" in cookie.lower()
            and "path=/" in cookie.lower()
        )
        local_name(client, "ann")
        assert 'id="rater">ann' in client.get("/review").text
        # A cookie edited by hand (another name, same signature) is worthless.
        value = client.cookies.get("headmaps_session")
        body, _, mac = value.partition(".")
        import base64
        import json

        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data["l"] = "mallory"
        forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode() + "." + mac
        client.cookies.clear()
        client.cookies.set("headmaps_session", forged)
        assert 'id="rater-form"' in client.get("/review").text  # back to anonymous: asks again
    assert n_ratings(url) == 0


def test_api_clients_without_cookies_keep_the_local_flow(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    with client_for(url) as client:
        body = {"description_id": ids["capital"], "rater": "ann", "label": "plausible"}
        assert client.post("/api/ratings", json=body).status_code == 201
        assert "headmaps_session" not in client.cookies  # the API leaves no cookie behind
        # A browser with a session sends its CSRF token as a header.
        token = csrf(client, "/review")
        assert client.post("/api/ratings", json=body).status_code == 403
        assert client.post("/api/ratings", json=body, headers={"x-csrf-token": token}).status_code == 201
        # A cross-site page cannot post JSON without CORS; as a form it needs the token.
        form = client.post(
            "/api/ratings", content='{"description_id": 1}', headers={"content-type": "text/plain"}
        )
        assert form.status_code in (403, 422)
    assert n_ratings(url) == 2


# --- raters ------------------------------------------------------------------------------------


def test_with_raters_anonymous_writes_are_refused_with_401(
    db: tuple[str, dict[str, int]], raters: dict[str, object]
) -> None:
    url, ids = db
    with client_for(url) as client:
        review = client.get("/review", follow_redirects=False)
        assert review.status_code == 303 and review.headers["location"].startswith("/login?next=")
        assert "Sign in" in client.get("/models/tiny/heads/1.2").text
        page = post_form(
            client, "/review", {"description_id": ids["capital"], "label": "plausible", "rater": "ann"}
        )
        assert (
            page.status_code == 401
            and "sign in as a rater first" in page.text
            and 'id="error-login"' in page.text
        )
        api = client.post(
            "/api/ratings", json={"description_id": ids["capital"], "rater": "ann", "label": "plausible"}
        )
        assert api.status_code == 401 and "sign in" in api.json()["detail"]
        # The local name form is closed once raters exist.
        assert post_form(client, "/review/name", {"rater": "ann"}).status_code == 403
        for bad in ("Bearer hm_nope", "Bearer ", "Basic YW5uOng="):
            response = client.get("/api/review/next", headers={"authorization": bad})
            assert response.status_code == 401 and response.json()["detail"]
        assert client.get("/api/review/next", params={"rater": "ann"}).status_code == 401
    assert n_ratings(url) == 0


def test_a_signed_in_rater_rates_as_themselves_only(
    db: tuple[str, dict[str, int]], raters: dict[str, object]
) -> None:
    url, ids = db
    ann = raters["ann"]
    with client_for(url) as client:
        failed = post_form(client, "/login", {"token": "hm_wrong"})
        assert failed.status_code == 401 and "unknown or revoked rater token" in failed.text
        sign_in(client, ann.token)
        assert 'id="rater">ann' in client.get("/review").text and 'id="logout"' in client.get("/models").text
        ok = post_form(client, "/review", {"description_id": ids["capital"], "label": "plausible"})
        assert ok.status_code == 200 and "Saved: description" in ok.text
        as_bob = post_form(
            client, "/review", {"description_id": ids["copy"], "label": "plausible", "rater": "bob"}
        )
        assert as_bob.status_code == 403 and "cannot rate as &#39;bob&#39;" in as_bob.text
        api = client.post(
            "/api/ratings",
            json={"description_id": ids["copy"], "label": "cannot_tell"},
            headers={"x-csrf-token": csrf(client, "/review")},
        )
        assert api.status_code == 201 and api.json()["rater"] == "ann"
        out = post_form(client, "/logout", {}, follow_redirects=False)
        assert out.status_code == 303
        assert client.get("/review", follow_redirects=False).status_code == 303  # signed out
    bearer = {"authorization": f"Bearer {raters['bob'].token}"}
    with client_for(url) as api_client:
        response = api_client.post(
            "/api/ratings", json={"description_id": ids["tense"], "label": "plausible"}, headers=bearer
        )
        assert response.status_code == 201 and response.json()["rater"] == "bob"
        claim = api_client.post(
            "/api/ratings",
            json={"description_id": ids["tense"], "rater": "ann", "label": "plausible"},
            headers=bearer,
        )
        assert claim.status_code == 403
        queue = api_client.get("/api/review/next", headers=bearer).json()
        assert queue["progress"]["done"] == 1
        assert api_client.get("/api/review/next", params={"rater": "ann"}, headers=bearer).status_code == 403
    with open_store(url) as store:
        rows = sorted((r.rater, r.description_id) for d in ids.values() for r in store.ratings_for(d))
    assert rows == sorted([("ann", ids["capital"]), ("ann", ids["copy"]), ("bob", ids["tense"])])


def test_login_links_work_once_and_revocation_is_immediate(
    db: tuple[str, dict[str, int]], raters: dict[str, object]
) -> None:
    url, ids = db
    ann = raters["ann"]
    with client_for(url) as client:
        page = client.get("/login", params={"code": ann.login_code})
        assert 'id="code-form"' in page.text  # a GET spends nothing: the button posts
        used = post_form(client, "/login", {"code": ann.login_code}, follow_redirects=False)
        assert used.status_code == 303
        again = post_form(TestClient(client.app, base_url=BASE), "/login", {"code": ann.login_code})
        assert again.status_code == 401 and "used already" in again.text
        assert (
            post_form(client, "/review", {"description_id": ids["capital"], "label": "plausible"}).status_code
            == 200
        )
        bearer = {"authorization": f"Bearer {ann.token}"}
        assert client.get("/api/review/next", headers=bearer).status_code == 200
        token = csrf(client, "/review")
        with open_store(url) as store:
            store.revoke_rater("ann")
        # The same session and the token are refused at once, without a restart.
        refused = client.post(
            "/review", data={"description_id": ids["copy"], "label": "plausible", "csrf_token": token}
        )
        assert refused.status_code == 401 and "revoked" in refused.text
        api = client.get("/api/review/next", headers=bearer)
        assert api.status_code == 401 and "unknown or revoked" in api.json()["detail"]
        assert post_form(client, "/login", {"token": ann.token}).status_code == 401
    assert n_ratings(url) == 1


def test_beyond_loopback_without_raters_nothing_is_written(db: tuple[str, dict[str, int]]) -> None:
    url, ids = db
    with client_for(url, host="10.1.2.3") as client:
        client.headers["host"] = "10.1.2.3:8000"
        assert 'id="rater-form"' not in client.get("/models").text
        api = client.post(
            "/api/ratings", json={"description_id": ids["capital"], "rater": "x", "label": "plausible"}
        )
        assert api.status_code == 403 and "raters add" in api.json()["detail"]
    assert n_ratings(url) == 0


def test_next_after_login_stays_on_this_site() -> None:
    assert safe_next("/review?model=tiny") == "/review?model=tiny"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", ""):
        assert safe_next(bad) == "/review"


# --- blind review ------------------------------------------------------------------------------


def test_others_ratings_stay_hidden_until_the_viewer_rates(
    db: tuple[str, dict[str, int]], raters: dict[str, object]
) -> None:
    url, ids = db
    did = ids["capital"]
    bob = {"authorization": f"Bearer {raters['bob'].token}"}
    with client_for(url) as client:
        client.post(
            "/api/ratings",
            json={"description_id": did, "label": "not_plausible", "comment": "BOB SAYS"},
            headers=bob,
        )
        sign_in(client, raters["ann"].token)
        page = client.get("/models/tiny/heads/1.2").text
        assert "BOB SAYS" not in page and 'data-rater="bob"' not in page
        assert f'id="hidden-{did}"' in page and "1 rating hidden until you rate it" in page
        (d,) = client.get("/api/models/tiny/heads/1.2").json()["descriptions"]
        assert (d["ratings"], d["history"], d["hidden_ratings"]) == ([], [], 1)
        assert client.get(f"/api/descriptions/{did}").json()["ratings"] == []
        grid = client.get("/api/models/tiny").json()["grid"]
        assert grid["cells"][1][2]["rating"] is None and grid["cells"][1][2]["ratings"] == 1
        review = client.get("/review").text
        assert "BOB SAYS" not in review and "fake-llm" not in review
        done = post_form(
            client, "/review", {"description_id": did, "label": "plausible"}, follow_redirects=False
        )
        assert done.status_code == 303
        page = client.get("/models/tiny/heads/1.2").text
        assert "BOB SAYS" in page and 'data-rater="bob"' in page and 'data-rater="ann"' in page
        assert "fake-llm" in page
        grid = client.get("/api/models/tiny").json()["grid"]
        assert grid["cells"][1][2]["rating"] in ("plausible", "not_plausible")
        # Bob's own view (he has rated) shows everything; an anonymous reader sees nothing.
        (d,) = client.get("/api/models/tiny/heads/1.2", headers=bob).json()["descriptions"]
        assert sorted(r["rater"] for r in d["ratings"]) == ["ann", "bob"]
    with client_for(url) as anonymous:
        (d,) = anonymous.get("/api/models/tiny/heads/1.2").json()["descriptions"]
        assert d["ratings"] == [] and d["hidden_ratings"] == 2


def test_the_served_report_is_blind_too(db: tuple[str, dict[str, int]], raters: dict[str, object]) -> None:
    url, ids = db
    bob = {"authorization": f"Bearer {raters['bob'].token}"}
    with client_for(url) as client:
        body = {"description_id": ids["capital"], "label": "not_plausible", "comment": "BOB SAYS"}
        assert client.post("/api/ratings", json=body, headers=bob).status_code == 201
        sign_in(client, raters["ann"].token)
        page = client.get("/models/tiny/report").text
        assert "BOB SAYS" not in page and "1 rating(s) hidden until you rate it" in page
        # The aggregate tables are blind too: Bob's label is not counted for Ann yet.
        ratings = page.split('id="ratings"')[1].split('id="heads"')[0]
        assert 'id="ratings-blind"' in ratings and "1 rating of descriptions you have not rated" in ratings
        assert "bob" not in ratings and "<table" not in ratings and "No ratings yet" not in ratings
        post_form(client, "/review", {"description_id": ids["capital"], "label": "plausible"})
        page = client.get("/models/tiny/report").text
        assert "BOB SAYS" in page
        ratings = page.split('id="ratings"')[1].split('id="heads"')[0]
        assert 'id="ratings-blind"' not in ratings and "ann, bob" in ratings
