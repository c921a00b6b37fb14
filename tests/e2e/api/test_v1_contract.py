"""The v1 dialect's contract (V1.md) against a real server process, on SQLite and PostgreSQL:
shapes, status codes, validation errors, other accounts' ids, the capacity queue, restart,
billing to the second, and what a server restart does to running and queued instances."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from tests.support import (
    BACKENDS,
    ServerProcess,
    fresh_postgres_database,
    make_server,
    running_server,
)
from tests.support.v1_client import V1, V1_SETTINGS

SATS_PER_HOUR = 360_000  # 100 sats a second: seconds are visible in the ledger
QUOTA = 300_000


@pytest.fixture(scope="module", params=BACKENDS)
def v1_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server with 2 instance slots, 3 instances per account, 100 sats/s, 1 s billing."""
    settings = {
        **V1_SETTINGS,
        "instance_slots": "2",
        "max_instances_per_account": "3",
        "instance_sats_per_hour": str(SATS_PER_HOUR),
        "instance_billing_seconds": "1",
        "files_quota_bytes": str(QUOTA),
    }
    data_dir = tmp_path_factory.mktemp(f"v1-{request.param}")
    if request.param == "postgres":
        with fresh_postgres_database() as url:
            proc = make_server(data_dir, url, **settings)
            proc.start()
            yield proc
            proc.stop()
    else:
        proc = make_server(data_dir, **settings)
        proc.start()
        yield proc
        proc.stop()


@pytest.fixture
def clients(v1_server: ServerProcess) -> Iterator[list[V1]]:
    """Fresh accounts (``clients.append(V1.account(...))``); their instances stopped after."""
    made: list[V1] = []
    yield made
    for client in made:
        client.ok("DELETE", "/instances", 204)


def account(clients: list[V1], server: ServerProcess, sats: int = 1_000_000) -> V1:
    client = V1.account(server, sats)
    clients.append(client)
    return client


def png(path: Path, width: int = 64, height: int = 48) -> Path:
    """Write a small PNG."""
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), "rgb24")
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    return path


# --- Destinations, templates, configurations ---------------------------------------------------


def test_destinations(v1_server: ServerProcess, clients: list[V1]) -> None:
    a, b = account(clients, v1_server), account(clients, v1_server)
    created = a.ok(
        "POST",
        "/destinations",
        201,
        json={"name": "Twitch", "url": "rtmp://live.twitch.tv/app", "key": "live_secret"},
    )
    assert created == {
        "id": created["id"],
        "name": "Twitch",
        "platform": "Twitch",
        "url": "rtmp://live.twitch.tv/app/****",
    }
    listed = a.ok("GET", "/destinations")["destinations"]
    assert listed == [created] and "live_secret" not in str(listed)
    assert b.ok("GET", "/destinations") == {"destinations": []}
    bad = a.error("POST", "/destinations", 400, json={"name": "x", "url": "http://a/b"})
    assert bad["field"] == "url"
    b.error("DELETE", f"/destinations/{created['id']}", 404)
    a.ok("DELETE", f"/destinations/{created['id']}", 204)
    a.error("DELETE", f"/destinations/{created['id']}", 404)


def test_templates_and_configuration_crud(v1_server: ServerProcess, clients: list[V1]) -> None:
    a, b = account(clients, v1_server), account(clients, v1_server)
    templates = a.ok("GET", "/templates")["templates"]
    by_name = {t["name"]: t for t in templates}
    assert {"multistream", "failover", "two devices"} <= set(by_name)
    assert [e["type"] for e in by_name["two devices"]["elements"]] == [
        "inputstream", "inputstream", "switch", "failover", "outputstream",
    ]  # fmt: skip
    config = a.configuration("failover")
    assert config["elements"] == by_name["failover"]["elements"]
    assert set(config) == {"id", "name", "createdAt", "updatedAt", "elements"}
    assert a.ok("GET", f"/configurations/{config['id']}") == config
    assert a.ok("GET", "/configurations")["configurations"] == [config]
    b.error("GET", f"/configurations/{config['id']}", 404)
    b.error("PUT", f"/configurations/{config['id']}", 404, json={"template": "multistream"})
    b.error("DELETE", f"/configurations/{config['id']}", 404)
    elements = by_name["multistream"]["elements"]
    put = a.ok(
        "PUT", f"/configurations/{config['id']}", json={"name": "renamed", "elements": elements}
    )
    assert put["name"] == "renamed" and put["elements"] == elements
    a.ok("DELETE", f"/configurations/{config['id']}", 204)
    a.error("GET", f"/configurations/{config['id']}", 404)
    assert a.error("POST", "/configurations", 400, json={"template": "nope"})["field"] == "template"


def _graph(*extra: dict[str, Any], out: dict[str, Any] | None = None) -> dict[str, Any]:
    output = {"id": "outputstream-1", "type": "outputstream", "inputs": ["inputstream-1"]}
    output.update(out or {})
    return {
        "name": "x",
        "elements": [{"id": "inputstream-1", "type": "inputstream"}, output, *extra],
    }


INVALID = [
    (_graph({"id": "mixer-1", "type": "mixer"}), "elements[2].type", "unknown element type"),
    (_graph(out={"settings": {"visible": True}}), "outputstream-1.settings.visible", "unknown"),
    (_graph(out={"inputs": ["switch-9"]}), "outputstream-1.inputs", "not an element"),
    (
        _graph(
            {"id": "switch-1", "type": "switch", "inputs": ["inputstream-1", "splitter-1"]},
            {"id": "splitter-1", "type": "splitter", "inputs": ["switch-1"]},
        ),
        "inputs",
        "cycle",
    ),
    (
        _graph(out={"settings": {"destinations": [f"d{i}" for i in range(7)]}}),
        "outputstream-1.settings.destinations",
        "at most 6",
    ),
    (
        _graph(out={"settings": {"format": "diagonal"}}),
        "outputstream-1.settings.format",
        "must be one of",
    ),
    (
        _graph(out={"settings": {"encoding": {"width": 1280, "crf": 20}}}),
        "outputstream-1.settings.encoding.crf",
        "unknown encoding field",
    ),
    (
        _graph(out={"settings": {"encoding": {"videoBitrateKbps": 5}}}),
        "outputstream-1.settings.encoding.videoBitrateKbps",
        "from 100",
    ),
    (
        _graph(out={"settings": {"reframe": "left"}}),
        "outputstream-1.settings.reframe",
        "center",
    ),
    (
        _graph({"id": "videoplayer-1", "type": "videoplayer", "settings": {"file": "nope"}}),
        "videoplayer-1.settings.file",
        "MP4",
    ),
    (
        _graph(
            {
                "id": "htmloverlay-1",
                "type": "htmloverlay",
                "inputs": ["inputstream-1"],
                "settings": {"url": "file:///etc/passwd"},
            }
        ),
        "htmloverlay-1.settings.url",
        "http/https URL",
    ),
    (_graph(out={"settings": {"destinations": ["dst_none"]}}), "destinations", "not a destination"),
    (
        {
            "elements": [
                {"id": "inputstream-1", "type": "inputstream"},
                {
                    "id": "failover-1",
                    "type": "failover",
                    "inputs": ["inputstream-1"],
                    "settings": {"webhookUrl": "https://hooks.example/x"},
                },
            ]
        },
        "failover-1.settings.webhookUrl",
        "not available yet",
    ),
    (
        {
            "elements": [
                {
                    "id": "inputstream-1",
                    "type": "inputstream",
                    "settings": {"pullUrl": "udp://a.example:9000"},
                }
            ]
        },
        "inputstream-1.settings.pullUrl",
        "must be a rtmp/rtmps/srt URL",
    ),
]


@pytest.mark.parametrize(("body", "field", "words"), INVALID)
def test_configuration_validation(
    v1_server: ServerProcess, clients: list[V1], body: dict[str, Any], field: str, words: str
) -> None:
    a = account(clients, v1_server)
    err = a.error("POST", "/configurations", 400, json=body)
    assert err["field"].endswith(field), err
    assert words in err["error"], err
    assert field.split(".")[0].split("[")[0] in err["error"] or "cycle" in err["error"]
    assert a.ok("GET", "/configurations") == {"configurations": []}


# --- Files ------------------------------------------------------------------------------------


def test_files(v1_server: ServerProcess, clients: list[V1], tmp_path: Path) -> None:
    a, b = account(clients, v1_server), account(clients, v1_server)
    image = png(tmp_path / "slate.png", 320, 180)
    with image.open("rb") as f:
        up = a.ok("POST", "/files", 201, files={"file": ("slate.png", f, "image/png")})
    assert (up["kind"], up["width"], up["height"], up["videoCodec"]) == ("png", 320, 180, "png")
    assert up["sizeBytes"] == image.stat().st_size
    listed = a.ok("GET", "/files")
    assert listed["files"] == [up] and listed["usedBytes"] == up["sizeBytes"]
    assert listed["quotaBytes"] == QUOTA
    junk = a.error("POST", "/files", 400, files={"file": ("x.mp4", b"not a video" * 100)})
    assert junk["field"] == "file" and "not a media file" in junk["error"]
    a.error("POST", "/files", 413, files={"file": ("big.png", b"\0" * (QUOTA + 1))})
    # A PNG is usable as a failover image; an unknown file id is refused.
    config = a.configuration("failover")
    elements = config["elements"]
    elements[1]["settings"]["image"] = up["id"]
    a.ok("PUT", f"/configurations/{config['id']}", json={"elements": elements})
    elements[1]["settings"]["image"] = "file_nope"
    err = a.error("PUT", f"/configurations/{config['id']}", 400, json={"elements": elements})
    assert err["field"] == "elements.failover-1.settings.image"
    b.error("DELETE", f"/files/{up['id']}", 404)
    a.ok("DELETE", f"/files/{up['id']}", 204)
    assert a.ok("GET", "/files")["files"] == []


# --- Launch, requests, instances ----------------------------------------------------------------


def test_launch_follow_and_instance_shape(v1_server: ServerProcess, clients: list[V1]) -> None:
    a, b = account(clients, v1_server), account(clients, v1_server)
    dest = a.destination("rtmp://127.0.0.1:1/live/x")
    config = a.configuration("multistream")
    body = {
        "numberOfInstances": 1,
        "autoStop": True,  # unknown top-level fields are ignored
        "instanceSettings": [
            {"name": "Instance name", "overrides": {"outputstream-1": {"destinations": [dest]}}}
        ],
    }
    request, location = a.launch(config["id"], body)
    assert location == f"/api/v1/instance-requests/{request['id']}"
    assert request["status"] == "QUEUED" and request["configurationId"] == config["id"]
    assert len(request["instances"]) == 1
    running = a.follow(location)
    assert running["instances"] == request["instances"]
    inst = a.instance(request["instances"][0])
    assert inst["status"] == "RUNNING" and inst["outputs"] == "OFFLINE"
    assert inst["name"] == "Instance name" and inst["stopReason"] is None
    assert inst["overrides"] == {"outputstream-1": {"destinations": [dest]}}
    state = a.element(inst, "inputstream-1")
    assert re.fullmatch(r"[0-9a-f]{32}", state["streamkey"])
    assert state["ingest"]["rtmp"].endswith(
        f":{v1_server.rtmp_port}/inputstream-1/{state['streamkey']}"
    )
    assert a.element(inst, "outputstream-1")["destinations"][0]["id"] == dest
    # Other accounts see nothing of it.
    b.error("GET", f"/instances/{inst['id']}", 404)
    b.error("GET", location.removeprefix("/api/v1"), 404)
    b.error("DELETE", f"/instances/{inst['id']}", 404)
    b.error("GET", f"/configurations/{config['id']}/instances", 404)
    assert b.ok("GET", "/instances") == {"instances": []}
    # A destination in use cannot be deleted; a configuration with instances neither.
    a.error("DELETE", f"/destinations/{dest}", 409)
    a.error("DELETE", f"/configurations/{config['id']}", 409)
    listed = a.ok("GET", f"/configurations/{config['id']}/instances")["instances"]
    assert [i["id"] for i in listed] == [inst["id"]]
    assert a.ok("GET", "/instances", params={"status": "QUEUED"}) == {"instances": []}
    a.ok("DELETE", f"/instances/{inst['id']}", 204)
    a.ok("DELETE", f"/instances/{inst['id']}", 204)
    stopped = a.instance(inst["id"])
    assert stopped["status"] == "STOPPED" and stopped["stopReason"] == "stopped"
    a.error("DELETE", "/instances/ins_0000000000000000", 404)
    a.ok("DELETE", f"/destinations/{dest}", 204)


LAUNCH_ERRORS = [
    ({"numberOfInstances": 2, "instanceSettings": [{"name": "a"}]}, "numberOfInstances"),
    (
        {"instanceSettings": [{"overrides": {"outputstream-1": {"visible": False}}}]},
        "instanceSettings.0.overrides.outputstream-1.visible",
    ),
    (
        {"instanceSettings": [{"overrides": {"htmloverlay-1": {"url": "https://a.example"}}}]},
        "instanceSettings.0.overrides.htmloverlay-1",
    ),
    (
        {"instanceSettings": [{"overrides": {"outputstream-1": {"destinations": ["dst_x"]}}}]},
        "instanceSettings.0.overrides.outputstream-1.settings.destinations",
    ),
    (
        {"instanceSettings": [{"overrides": {"outputstream-1": {"format": "square"}}}]},
        "instanceSettings.0.overrides.outputstream-1.settings.format",
    ),
]


@pytest.mark.parametrize(("body", "field"), LAUNCH_ERRORS)
def test_launch_errors(
    v1_server: ServerProcess, clients: list[V1], body: dict[str, Any], field: str
) -> None:
    a = account(clients, v1_server)
    config = a.configuration("multistream")
    err = a.error("POST", f"/configurations/{config['id']}/instances", 400, json=body)
    assert err["field"] == field, err
    assert a.ok("GET", "/instances") == {"instances": []}


def test_account_limit(v1_server: ServerProcess, clients: list[V1]) -> None:
    a = account(clients, v1_server)
    config = a.configuration("multistream")
    a.launch(config["id"], {"numberOfInstances": 3})
    err = a.error("POST", f"/configurations/{config['id']}/instances", 400)
    assert "0 instance slots" in err["error"]
    a.ok("DELETE", f"/configurations/{config['id']}/instances", 204)
    assert {i["status"] for i in a.ok("GET", "/instances")["instances"]} == {"STOPPED"}
    a.launch(config["id"])


def test_queue_is_fifo_and_starts_when_a_slot_frees(
    v1_server: ServerProcess, clients: list[V1]
) -> None:
    a, b = account(clients, v1_server), account(clients, v1_server)
    ca, cb = a.configuration("multistream"), b.configuration("multistream")
    first, _ = a.launch(ca["id"], {"numberOfInstances": 2})
    for instance_id in first["instances"]:
        a.wait_status(instance_id, "RUNNING")
    (b1,) = b.launch(cb["id"])[0]["instances"]
    waiting, waiting_location = a.launch(ca["id"])
    (a3,) = waiting["instances"]
    (b2,) = b.launch(cb["id"])[0]["instances"]
    time.sleep(1.5)  # the queue is looked at every second: nothing may start meanwhile
    for client, instance_id in ((b, b1), (a, a3), (b, b2)):
        assert client.instance(instance_id)["status"] == "QUEUED"
    assert a.ok("GET", waiting_location.removeprefix("/api/v1"))["status"] == "QUEUED"
    assert [
        i["id"] for i in a.ok("GET", "/instances", params={"status": "QUEUED"})["instances"]
    ] == [a3]

    a.ok("DELETE", f"/instances/{first['instances'][0]}", 204)
    b.wait_status(b1, "RUNNING", within=5)
    assert a.instance(a3)["status"] == "QUEUED" and b.instance(b2)["status"] == "QUEUED"
    # Cancelling a queued instance frees nothing; stopping a running one starts the next.
    b.ok("DELETE", f"/instances/{b2}", 204)
    assert b.instance(b2)["stopReason"] == "cancelled" and b.instance(b2)["startedAt"] is None
    a.ok("DELETE", f"/instances/{first['instances'][1]}", 204)
    a.wait_status(a3, "RUNNING", within=5)
    a.follow(waiting_location)


def test_restart_keeps_id_keys_and_overrides(v1_server: ServerProcess, clients: list[V1]) -> None:
    a = account(clients, v1_server)
    d1, d2 = a.destination("rtmp://127.0.0.1:1/live/a"), a.destination("rtmp://127.0.0.1:1/live/b")
    config = a.configuration("two devices")
    request, location = a.launch(
        config["id"],
        {"instanceSettings": [{"overrides": {"outputstream-1": {"destinations": [d1]}}}]},
    )
    (instance_id,) = request["instances"]
    before = a.follow(location) and a.instance(instance_id)
    merged = a.ok(
        "PATCH",
        f"/instances/{instance_id}/overrides",
        json={"switch-1": {"input": "inputstream-2"}, "outputstream-1": {"destinations": [d1, d2]}},
    )
    assert merged == {
        "switch-1": {"input": "inputstream-2"},
        "outputstream-1": {"destinations": [d1, d2]},
    }
    assert a.ok("GET", f"/instances/{instance_id}/overrides") == merged
    bad = a.error(
        "PATCH", f"/instances/{instance_id}/overrides", 400, json={"switch-1": {"input": "x"}}
    )
    assert bad["field"] == "overrides.switch-1.settings.input"
    a.error("PATCH", f"/instances/{instance_id}/overrides", 400, json={"failover-1": {"url": "x"}})
    a.ok("PUT", f"/instances/{instance_id}/outputs", json={"outputstream-1": "LIVE"})
    restarted = a.ok("POST", f"/instances/{instance_id}/restart")
    assert restarted["id"] == instance_id and restarted["status"] == "RUNNING"
    assert restarted["overrides"] == merged and restarted["outputs"] == "LIVE"
    for input_id in ("inputstream-1", "inputstream-2"):
        key = a.element(before, input_id)["streamkey"]
        assert a.element(restarted, input_id)["streamkey"] == key
    assert a.element(restarted, "switch-1")["input"] == "inputstream-2"
    # A stopped instance restarts through the queue, with the same id and keys.
    a.ok("DELETE", f"/instances/{instance_id}", 204)
    again = a.ok("POST", f"/instances/{instance_id}/restart")
    assert again["id"] == instance_id
    running = a.wait_status(instance_id, "RUNNING")
    assert (
        a.element(running, "inputstream-1")["streamkey"]
        == a.element(before, "inputstream-1")["streamkey"]
    )


def test_outputs_per_configuration_and_instance(
    v1_server: ServerProcess, clients: list[V1]
) -> None:
    a = account(clients, v1_server)
    config = a.configuration("multistream")
    request, location = a.launch(config["id"], {"numberOfInstances": 2})
    a.follow(location)
    live = a.ok("PUT", f"/configurations/{config['id']}/instances", json={"outputs": "LIVE"})
    assert [i["outputs"] for i in live["instances"]] == ["LIVE", "LIVE"]
    one = request["instances"][0]
    off = a.ok("PUT", f"/instances/{one}/outputs", json={"outputs": "OFFLINE"})
    assert off["outputs"] == "OFFLINE" and a.element(off, "outputstream-1")["live"] is False
    assert a.instance(request["instances"][1])["outputs"] == "LIVE"
    err = a.error("PUT", f"/instances/{one}/outputs", 400, json={"outputstream-7": "LIVE"})
    assert err["field"] == "outputstream-7"
    a.error("PUT", f"/configurations/{config['id']}/instances", 400, json={"outputs": "ON"})


# --- Money ------------------------------------------------------------------------------------


def test_public_config_and_billing_to_the_second(
    v1_server: ServerProcess, clients: list[V1]
) -> None:
    a = account(clients, v1_server, sats=100_000)
    public = a.http.get("/api/public/config").json()
    assert public["pricing"]["INSTANCE_SATS_PER_HOUR"] == SATS_PER_HOUR
    config = a.configuration("multistream")
    request, location = a.launch(config["id"])
    (instance_id,) = request["instances"]
    a.follow(location)
    # Charged as it runs (1 s billing interval here).
    deadline = time.monotonic() + 10
    while a.balance() == 100_000:
        assert time.monotonic() < deadline, "nothing charged while running"
        time.sleep(0.1)
    time.sleep(1.5)
    a.ok("DELETE", f"/instances/{instance_id}", 204)
    stopped = a.instance(instance_id)
    (usage,) = a.ok("GET", "/usage")["usage"]
    assert usage["instanceId"] == instance_id and usage["configurationId"] == config["id"]
    elapsed_ms = stopped["stoppedAt"] - stopped["startedAt"]
    assert usage["seconds"] == elapsed_ms // 1000
    assert usage["costSats"] == usage["seconds"] * SATS_PER_HOUR // 3600
    assert a.balance() == 100_000 - usage["costSats"]


def test_insufficient_funds_stops_the_instance(v1_server: ServerProcess, clients: list[V1]) -> None:
    a = account(clients, v1_server, sats=350)  # 3.5 s at 100 sats/s
    config = a.configuration("multistream")
    request, _ = a.launch(config["id"])
    (instance_id,) = request["instances"]
    stopped = a.wait_status(instance_id, "STOPPED", within=15)
    assert stopped["stopReason"] == "insufficient_funds"
    (usage,) = a.ok("GET", "/usage")["usage"]
    assert 0 < usage["costSats"] <= 350 and a.balance() == 350 - usage["costSats"]
    err = a.error("POST", f"/configurations/{config['id']}/instances", 402)
    assert "insufficient_funds" in err["error"]


# --- Server restarts ----------------------------------------------------------------------------


@pytest.mark.parametrize("database", BACKENDS)
def test_server_restart_stops_running_and_keeps_the_queue(database: str, tmp_path: Path) -> None:
    settings = {
        **V1_SETTINGS,
        "instance_slots": "1",
        "instance_billing_seconds": "1",
        "instance_sats_per_hour": str(SATS_PER_HOUR),
    }
    with fresh_postgres_database() if database == "postgres" else nullcontext("") as url:
        server = make_server(tmp_path, url, **settings)
        server.start()
        try:
            a = V1.account(server, sats=100_000)
            config = a.configuration("multistream")
            ids = [a.launch(config["id"])[0]["instances"][0] for _ in range(3)]
            a.wait_status(ids[0], "RUNNING")
            deadline = time.monotonic() + 10
            while a.balance() == 100_000:  # until a second is billed
                assert time.monotonic() < deadline, "nothing billed"
                time.sleep(0.05)
            assert [a.instance(i)["status"] for i in ids[1:]] == ["QUEUED", "QUEUED"]
            server.stop(signal.SIGKILL)
            server.start()
            first = a.instance(ids[0])
            assert first["status"] == "STOPPED" and first["stopReason"] == "server_restart"
            # Closed at its last billed second: what ran before the crash, charged once.
            usage = next(u for u in a.ok("GET", "/usage")["usage"] if u["instanceId"] == ids[0])
            assert usage["seconds"] >= 1
            assert first["stoppedAt"] == first["startedAt"] + 1000 * usage["seconds"]
            assert usage["costSats"] == usage["seconds"] * 100
            a.wait_status(ids[1], "RUNNING")
            assert a.instance(ids[2])["status"] == "QUEUED"
            # A graceful stop settles and marks the running one the same way.
            server.stop()
            server.start()
            second = a.instance(ids[1])
            assert (second["status"], second["stopReason"]) == ("STOPPED", "server_restart")
            a.wait_status(ids[2], "RUNNING")
        finally:
            server.stop()


def test_auto_stop_idle_and_no_input(tmp_path: Path) -> None:
    with running_server(
        tmp_path,
        **V1_SETTINGS,
        instance_idle_stop_seconds="2",
        instance_no_input_stop_seconds="3",
    ) as server:
        a = V1.account(server)
        config = a.configuration("multistream")
        (idle,) = a.launch(config["id"])[0]["instances"]
        (unfed,) = a.launch(config["id"])[0]["instances"]
        a.wait_status(unfed, "RUNNING")
        live_at_ms = time.time() * 1000
        a.ok("PUT", f"/instances/{unfed}/outputs", json={"outputs": "LIVE"})
        stopped = a.wait_status(idle, "STOPPED", within=10)
        assert stopped["stopReason"] == "idle"
        stopped = a.wait_status(unfed, "STOPPED", within=10)
        assert stopped["stopReason"] == "no_input"
        assert stopped["stoppedAt"] - live_at_ms >= 2500  # counted from going LIVE


SEED_OPERATIONS = [
    ("get", "/api/v1/configurations"),
    ("get", "/api/v1/configurations/{configurationId}"),
    ("post", "/api/v1/configurations/{configurationId}/instances"),
    ("get", "/api/v1/configurations/{configurationId}/instances"),
    ("delete", "/api/v1/configurations/{configurationId}/instances"),
    ("get", "/api/v1/instance-requests/{requestId}"),
    ("get", "/api/v1/instances"),
    ("delete", "/api/v1/instances"),
    ("get", "/api/v1/instances/{instanceId}"),
    ("delete", "/api/v1/instances/{instanceId}"),
    ("post", "/api/v1/instances/{instanceId}/restart"),
    ("get", "/api/v1/instances/{instanceId}/overrides"),
    ("patch", "/api/v1/instances/{instanceId}/overrides"),
    ("get", "/api/v1/destinations"),
    # V1.md's additions
    ("post", "/api/v1/destinations"),
    ("delete", "/api/v1/destinations/{id}"),
    ("get", "/api/v1/files"),
    ("post", "/api/v1/files"),
    ("delete", "/api/v1/files/{id}"),
    ("get", "/api/v1/templates"),
    ("post", "/api/v1/configurations"),
    ("put", "/api/v1/configurations/{configurationId}"),
    ("delete", "/api/v1/configurations/{configurationId}"),
    ("put", "/api/v1/configurations/{configurationId}/instances"),
    ("put", "/api/v1/instances/{instanceId}/outputs"),
    ("get", "/api/v1/usage"),
]


def test_every_v1_operation_is_documented(v1_server: ServerProcess, clients: list[V1]) -> None:
    a = account(clients, v1_server)
    paths = a.http.get("/openapi.json").json()["paths"]
    for method, path in SEED_OPERATIONS:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from OpenAPI"
        assert paths[path][method].get("description"), f"{method.upper()} {path} undocumented"
    launch = paths["/api/v1/configurations/{configurationId}/instances"]["post"]
    assert "Location" in launch["responses"]["202"]["headers"]
    # The seed's curl example, with only the base URL changed.
    listed = a.http.get("/api/v1/configurations")
    assert listed.status_code == 200 and listed.json() == {"configurations": []}
