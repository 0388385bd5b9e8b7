"""Signing in from tests: the CSRF token of a page's forms, the local user's name (no raters)
and a rater's sign-in with a token, all through the app's own pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client: TestClient, path: str = "/login") -> str:
    """The CSRF token the page at ``path`` puts in its forms (its session cookie is kept)."""
    found = CSRF.search(client.get(path).text)
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def post_form(client: TestClient, path: str, data: dict, **kwargs: object):  # noqa: ANN201
    """A form post as the browser sends it: with the session's CSRF token."""
    return client.post(path, data={**data, "csrf_token": csrf(client)}, **kwargs)


def local_name(client: TestClient, name: str) -> None:
    """Name the local user (a server without raters), as the review queue asks once."""
    response = post_form(client, "/review/name", {"rater": name}, follow_redirects=False)
    assert response.status_code == 303, response.text


def sign_in(client: TestClient, token: str) -> None:
    response = post_form(client, "/login", {"token": token}, follow_redirects=False)
    assert response.status_code == 303, response.text
