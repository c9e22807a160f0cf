"""The pytest plugin: fixtures work, a contract violation fails the test, and a broken simulator import never
breaks pytest itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from ksef_async.testing.simulator import KsefSimulator

pytestmark = pytest.mark.anyio


async def test_fixture_gives_a_started_strict_simulator(
    ksef_simulator: KsefSimulator, ksef_simulator_credentials: tuple[str, str]
) -> None:
    nip, token = ksef_simulator_credentials
    assert ksef_simulator.state.tokens[token].context == ("Nip", nip)
    assert ksef_simulator.runtime.contract is not None
    async with aiohttp.ClientSession() as http, http.post(ksef_simulator.base_url + "/auth/challenge") as resp:
        assert resp.status == 200


@pytest.mark.ksef_simulator(rate_limits="off", contexts=[("1111111111", "tok")])
async def test_marker_configures_the_fixture(ksef_simulator: KsefSimulator) -> None:
    assert not ksef_simulator.rate_limiter.enabled
    assert "tok" in ksef_simulator.state.tokens


async def test_factory_starts_more_simulators(
    ksef_simulator_factory: Callable[..., Awaitable[KsefSimulator]],
) -> None:
    first = await ksef_simulator_factory(seed=1)
    second = await ksef_simulator_factory(seed=2, strict_contract=False)
    assert first.base_url != second.base_url


def _run_pytest(tmp_path: Path, conftest: str, test: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(conftest))
    (tmp_path / "test_user.py").write_text(textwrap.dedent(test))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_a_contract_violation_fails_the_users_test(tmp_path: Path) -> None:
    result = _run_pytest(
        tmp_path,
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """,
        """
        import aiohttp
        import pytest

        @pytest.mark.anyio
        async def test_bad_body(ksef_simulator):
            async with aiohttp.ClientSession() as http:
                await http.post(ksef_simulator.base_url + "/auth/ksef-token", json={"challenge": 1})
        """,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "break the OpenAPI contract" in result.stdout


def test_broken_simulator_import_does_not_break_pytest(tmp_path: Path) -> None:
    result = _run_pytest(
        tmp_path,
        """
        import sys

        sys.modules["ksef_async.testing.simulator"] = None  # any import of it now raises ImportError
        """,
        """
        import pytest

        def test_plain():
            assert True

        @pytest.mark.anyio
        async def test_needs_simulator(ksef_simulator):
            pass

        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """,
    )
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    assert "1 error" in result.stdout
    assert "ImportError" in result.stdout or "ModuleNotFoundError" in result.stdout


def test_plugin_import_is_light() -> None:
    # Compared with importing the package itself, the plugin adds no simulator, server, schema or XML module.
    code = (
        "import sys, ksef_async; before = set(sys.modules); import ksef_async.testing.pytest_plugin; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    added = out.stdout.strip()
    for heavy in ("ksef_async.testing.simulator", "aiohttp.web", "jsonschema", "lxml", "signxml", "cryptography"):
        assert f"'{heavy}" not in added, added


@pytest.mark.ksef_simulator(rate_limits="off")
def test_thread_fixture_serves_synchronous_code(
    ksef_simulator_in_thread: KsefSimulator, ksef_simulator_credentials: tuple[str, str]
) -> None:
    nip, token = ksef_simulator_credentials
    assert ksef_simulator_in_thread.state.tokens[token].context == ("Nip", nip)
    assert not ksef_simulator_in_thread.rate_limiter.enabled
    code = (
        "import urllib.request as u; "
        f"print(u.urlopen(u.Request({ksef_simulator_in_thread.base_url!r} + '/auth/challenge', b'')).status)"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert child.stdout.strip() == "200"


def test_thread_fixture_fails_the_users_test_on_a_contract_violation(tmp_path: Path) -> None:
    result = _run_pytest(
        tmp_path,
        "",
        """
        import json
        import urllib.error
        import urllib.request

        def test_bad_body(ksef_simulator_in_thread):
            body = json.dumps({"challenge": 1}).encode()
            request = urllib.request.Request(
                ksef_simulator_in_thread.base_url + "/auth/ksef-token",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(request)
            except urllib.error.HTTPError:
                pass
        """,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "break the OpenAPI contract" in result.stdout
