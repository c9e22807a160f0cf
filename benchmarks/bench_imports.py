"""Whole-process start-up cost: ``import ksef_async``, ``ksef-async --help`` / ``--version`` and the pytest plugin.

Each command runs as a fresh process, in turn with its baseline (A B A B ...), after one warm-up each; the figures
are medians of wall time and of the child's CPU time (user + sys, from ``getrusage``), which the load of a shared
machine disturbs less: the verdicts use CPU time (on an idle machine wall ~= CPU for these single-threaded
start-ups; on a loaded one wall includes waiting for a core). Targets (issue 13): ``import ksef_async`` <= 60 ms,
``ksef-async --help`` <= 250 ms, the plugin adds <= 30 ms to an unrelated pytest run (median of the paired
differences with ``-p no:ksef_async``).

    python benchmarks/bench_imports.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import describe

PY = sys.executable


def _cli() -> list[str]:
    script = Path(PY).with_name("ksef-async")
    if script.exists():
        return [str(script)]
    found = shutil.which("ksef-async")
    return [found] if found else [PY, "-m", "ksef_async.cli"]


def _run(cmd: list[str], cwd: str | None) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _pair(a: list[str], b: list[str], runs: int, cwd: str | None = None) -> dict[str, list[float]]:
    _run(a, cwd)
    _run(b, cwd)
    out: dict[str, list[float]] = {"a_wall": [], "a_cpu": [], "b_wall": [], "b_cpu": []}
    for _ in range(runs):
        for key, cmd in (("a", a), ("b", b)):
            wall, cpu = _run(cmd, cwd)
            out[f"{key}_wall"].append(wall)
            out[f"{key}_cpu"].append(cpu)
    return out


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    import ksef_async  # noqa: PLC0415 - only for its version line

    print(f"machine: {describe(f'ksef-async {ksef_async.__version__}')}; load {os.getloadavg()}")
    print(f"{runs} runs each after one warm-up, A B A B ...; medians in ms (wall, CPU = user + sys of the child)\n")
    baseline = [PY, "-c", "pass"]
    cli = _cli()
    rows = [
        ("import ksef_async", [PY, "-c", "import ksef_async"], baseline, 60.0),
        ("ksef-async --help", [*cli, "--help"], baseline, 250.0),
        ("ksef-async --version", [*cli, "--version"], baseline, None),
        ("from ksef_async import KsefClient", [PY, "-c", "from ksef_async import KsefClient"], baseline, None),
    ]
    print(f"{'command':36} {'wall':>7} {'cpu':>7}   baseline {'wall':>7} {'cpu':>7}   target")
    print("(baseline -c pass: python -c pass; no:plug: the same pytest run with -p no:ksef_async)")
    verdicts = []
    for label, a, b, target in rows:
        r = _pair(a, b, runs)
        note = ""
        if target is not None:
            met = statistics.median(r["a_cpu"]) * 1000 <= target
            note = f"<= {target:.0f} ms CPU: {'met' if met else 'NOT met'}"
            verdicts.append(met)
        print(
            f"{label:36} {_ms(r['a_wall'])} {_ms(r['a_cpu'])}   {'-c pass':8} {_ms(r['b_wall'])} {_ms(r['b_cpu'])}"
            f"   {note}"
        )

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "test_unrelated.py").write_text("def test_one():\n    assert 1 + 1 == 2\n", encoding="utf-8")
        pytest_cmd = [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_unrelated.py"]
        r = _pair(pytest_cmd, [*pytest_cmd[:3], "-p", "no:ksef_async", *pytest_cmd[3:]], 2 * runs, cwd=tmp)
    print(
        f"{'pytest (unrelated test), plugin on':36} {_ms(r['a_wall'])} {_ms(r['a_cpu'])}   {'no:plug':8} "
        f"{_ms(r['b_wall'])} {_ms(r['b_cpu'])}"
    )
    of_medians = (statistics.median(r["a_cpu"]) - statistics.median(r["b_cpu"])) * 1000
    paired = statistics.median(a - b for a, b in zip(r["a_cpu"], r["b_cpu"], strict=True)) * 1000
    # The plugin's own import once pytest is loaded: the part of the difference above that is not noise.
    probe = "import pytest, time; t = time.perf_counter(); import ksef_async.testing.pytest_plugin; "
    probe += "print(time.perf_counter() - t)"
    own = statistics.median(
        float(subprocess.run([PY, "-c", probe], capture_output=True, text=True, check=True).stdout) for _ in range(runs)
    )
    met = own * 1000 <= 30.0 and of_medians <= 30.0
    verdicts.append(met)
    print(
        f"plugin adds: {of_medians:.1f} ms CPU (difference of medians), {paired:.1f} ms (median of paired "
        f"differences); importing it after pytest: {own * 1000:.1f} ms; target <= 30 ms: {'met' if met else 'NOT met'}"
    )
    print(f"\nall targets: {'met' if all(verdicts) else 'NOT met'}")


if __name__ == "__main__":
    main()
