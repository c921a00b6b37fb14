"""A real HTTP/1.1 webhook receiver on loopback, and the documented verification recipes.

The receiver verifies every signature with the Python code block of the README (loaded
from the file, so the documentation is what is tested); the Node.js block is run by ``node``.
Other webhook tests import :class:`Receiver` from here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from simulcast.control.services.webhooks import sign
from tests.support.webhook_receiver import Receiver, doc_block, python_recipe

# --- the recipes themselves ------------------------------------------------------------------

SECRET = "whsec_test_secret"
BODY = b'{"id":"dlv_1","event":"test.ping","createdAt":1,"data":{"x":"\xc3\xa9"}}'


def test_python_recipe_accepts_our_signature_and_rejects_tampering() -> None:
    verify = python_recipe()
    ts = str(int(time.time()))
    signature = sign(SECRET, int(ts), BODY)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify(SECRET, ts, signature, BODY)
    assert not verify("other", ts, signature, BODY)
    assert not verify(SECRET, ts, signature, BODY + b" ")
    assert not verify(SECRET, str(int(ts) + 1), signature, BODY)
    old = str(int(time.time()) - 3600)
    assert not verify(SECRET, old, sign(SECRET, int(old), BODY), BODY)
    assert not verify(SECRET, "", signature, BODY)


def test_signature_matches_api_md_definition() -> None:
    import hashlib
    import hmac

    expected = hmac.new(b"s3cret", b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign("s3cret", 1700000000, BODY) == f"sha256={expected}"


NODE_HARNESS = """
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const out = input.cases.map((c) =>
  verifySimulcastSignature(c.secret, c.timestamp, c.signature, Buffer.from(c.body, "base64")));
process.stdout.write(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_recipe_agrees(tmp_path: Path) -> None:
    import base64

    script = tmp_path / "verify.js"
    script.write_text(doc_block("javascript", "function verifySimulcastSignature") + NODE_HARNESS)
    ts = str(int(time.time()))
    good = sign(SECRET, int(ts), BODY)
    b64 = base64.b64encode(BODY).decode()
    cases = [
        {"secret": SECRET, "timestamp": ts, "signature": good, "body": b64},
        {"secret": "other", "timestamp": ts, "signature": good, "body": b64},
        {"secret": SECRET, "timestamp": ts, "signature": good[:-1], "body": b64},
        {"secret": SECRET, "timestamp": "1", "signature": sign(SECRET, 1, BODY), "body": b64},
    ]
    out = subprocess.run(
        ["node", str(script)],
        input=json.dumps({"cases": cases}).encode(),
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert json.loads(out.stdout) == [True, False, False, False]


async def test_receiver_checks_signatures_with_the_recipe() -> None:
    import httpx

    async with Receiver(secret=SECRET, statuses=[500, 200]) as receiver:
        ts = int(time.time())
        headers = {
            "X-Simulcast-Timestamp": str(ts),
            "X-Simulcast-Signature": sign(SECRET, ts, BODY),
        }
        async with httpx.AsyncClient() as client:
            first = await client.post(receiver.url, content=BODY, headers=headers)
            second = await client.post(receiver.url, content=BODY + b"x", headers=headers)
        assert (first.status_code, second.status_code) == (500, 200)
        assert [r.signature_ok for r in receiver.requests] == [True, False]
