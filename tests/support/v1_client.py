"""A small client of the v1 dialect for tests (sync httpx against a real server)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.support import ServerProcess

V1_SETTINGS = {
    "rate_limit_per_minute": "100000",
    "webhooks_allow_http": "true",
    "webhooks_allow_private": "true",
}
"""Settings every v1 test server needs (tests poll faster than 60 requests a minute)."""


class V1:
    """One account's view of the v1 API."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        self.server = server
        self.http = httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=20
        )

    @classmethod
    def account(cls, server: ServerProcess, sats: int = 1_000_000) -> V1:
        """A fresh, funded account."""
        return cls(server, server.create_account(sats=sats))

    def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        """Call and check the status; the JSON body (``None`` for 204)."""
        r = self.http.request(method, "/api/v1" + path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def error(self, method: str, path: str, status: int, **kw: Any) -> dict[str, Any]:
        """Call expecting an error; its ``{"error", ...}`` body."""
        r = self.http.request(method, "/api/v1" + path, **kw)
        assert r.status_code == status, f"{method} {path}: {r.status_code} {r.text}"
        body: dict[str, Any] = r.json()
        assert isinstance(body.get("error"), str) and body["error"]
        return body

    def destination(self, url: str, name: str = "dest", key: str | None = None) -> str:
        """Save a destination; its id."""
        body: dict[str, Any] = {"name": name, "url": url}
        if key:
            body["key"] = key
        return str(self.ok("POST", "/destinations", 201, json=body)["id"])

    def configuration(self, template: str = "multistream", **body: Any) -> dict[str, Any]:
        """Create a configuration (a template copy by default)."""
        payload = body or {"template": template}
        created: dict[str, Any] = self.ok("POST", "/configurations", 201, json=payload)
        return created

    def launch(self, config_id: str, body: Any = None) -> tuple[dict[str, Any], str]:
        """Launch; the request object and its ``Location``."""
        kw = {"json": body} if body is not None else {}
        r = self.http.post(f"/api/v1/configurations/{config_id}/instances", **kw)
        assert r.status_code == 202, r.text
        return r.json(), r.headers["Location"]

    def instance(self, instance_id: str) -> dict[str, Any]:
        """``GET /instances/{id}``."""
        found: dict[str, Any] = self.ok("GET", f"/instances/{instance_id}")
        return found

    def wait_status(self, instance_id: str, status: str, within: float = 20) -> dict[str, Any]:
        """Poll an instance until it has ``status``."""
        deadline = time.monotonic() + within
        while True:
            inst = self.instance(instance_id)
            if inst["status"] == status:
                return inst
            assert time.monotonic() < deadline, f"{instance_id} stayed {inst}"
            time.sleep(0.05)

    def follow(self, location: str, status: str = "RUNNING", within: float = 20) -> dict[str, Any]:
        """Follow a request's ``Location`` until it has ``status``."""
        deadline = time.monotonic() + within
        while True:
            r = self.http.get(location)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] == status:
                return body
            assert time.monotonic() < deadline, f"request stayed {body}"
            time.sleep(0.05)

    def element(self, instance: dict[str, Any], element_id: str) -> dict[str, Any]:
        """One element's ``state`` in an instance object."""
        state: dict[str, Any] = next(
            e["state"] for e in instance["state"]["elements"] if e["id"] == element_id
        )
        return state

    def balance(self) -> int:
        """The wallet balance."""
        r = self.http.get("/api/wallet/balance")
        assert r.status_code == 200, r.text
        return int(r.json()["balance"])
