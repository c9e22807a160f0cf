"""`serve_in_thread`: a simulator reachable from synchronous code and other processes, fully stopped on exit."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest

from ksef_async.testing.simulator import KsefSimulator, serve_in_thread


def _challenge(base_url: str) -> int:
    request = urllib.request.Request(base_url + "/auth/challenge", data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        status: int = response.status
        assert "challenge" in json.loads(response.read())
    return status


def _sim_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ksef-simulator"]


def test_serves_synchronous_callers_and_other_processes_then_stops() -> None:
    with serve_in_thread(KsefSimulator(contexts=[("5265877635", "tok")], strict_contract=True)) as sim:
        assert _challenge(sim.base_url) == 200
        url = sim.base_url + "/auth/challenge"
        code = f"import urllib.request as u; print(u.urlopen(u.Request({url!r}, b'')).status)"
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
        assert child.stdout.strip() == "200"
        base_url = sim.base_url
    assert sim.contract_violations == []
    assert _sim_threads() == []
    with pytest.raises(urllib.error.URLError):
        _challenge(base_url)


def test_a_failed_start_raises_and_leaves_no_thread() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError), serve_in_thread(KsefSimulator(port=port)):
            pytest.fail("the body must not run when the simulator did not start")
    assert _sim_threads() == []
