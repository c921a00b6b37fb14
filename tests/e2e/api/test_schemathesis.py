"""Property-based run of schemathesis against /openapi.json: no request may produce a 5xx, an
undocumented status, a non-JSON error or a body that breaks the documented schema."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess, make_server
from tests.support.contract import CHECKS


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = make_server(
        tmp_path_factory.mktemp("fuzz"),
        rate_limit_per_minute="1000000",
        invalid_keys_per_minute_per_address="1000000",
    )
    server.start()
    yield server
    server.stop()


def test_openapi_contract_holds_under_fuzzing(open_server: ServerProcess) -> None:
    exe = shutil.which("schemathesis") or shutil.which("st")
    assert exe, "schemathesis is a test dependency"
    sk = open_server.create_account()
    result = subprocess.run(
        [
            exe,
            "run",
            open_server.base_url + "/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "15",
            "--seed",
            "20261122",
            "--continue-on-failure",
            "--header",
            f"Authorization: Bearer {sk}",
            "--request-timeout",
            "10",
            # Without an operator wallet the Lightning endpoints answer a documented 503 by
            # design (a 5xx to this check); tests/e2e/lightning exercises them against wallets.
            "--exclude-path-regex",
            "^/api/wallet/(nwc|topup|topups/|auto-topup)",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=Path(open_server.data_dir),
    )
    report = result.stdout[result.stdout.find("FAILURES") :] or result.stdout[-3000:]
    assert result.returncode == 0, report
    assert "Internal server error" not in open_server.log()
