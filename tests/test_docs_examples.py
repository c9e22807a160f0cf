"""Every ```python example in docs/ runs as written (each starts its own simulator), in a fresh directory.

A block preceded by ``<!-- docs-example: pytest -->`` is a test file and runs under pytest instead; one preceded by
``<!-- docs-example: redis -->`` runs as a script with ``REDIS_URL`` naming a ``redis-server`` of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ratelimit_backends._redis import REDIS_SERVER, RedisServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
_FENCE = re.compile(r"(?P<marker><!-- docs-example: (?P<kind>\w+) -->\s*\n)?```python\n(?P<code>.*?)\n```", re.DOTALL)


def _examples() -> list[tuple[str, str, str]]:
    found: list[tuple[str, str, str]] = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for number, match in enumerate(_FENCE.finditer(text), 1):
            line = text.count("\n", 0, match.start("code"))
            found.append((f"{page.relative_to(DOCS)}:{line}#{number}", match["kind"] or "script", match["code"]))
    return found


EXAMPLES = _examples()


def test_the_docs_have_examples() -> None:
    pages = {name.split(":")[0] for name, _, _ in EXAMPLES}
    assert len(EXAMPLES) >= 10
    assert {"quickstart.md", "guides/batch.md", "guides/testing.md"} <= pages


@pytest.mark.parametrize(("name", "kind", "code"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_docs_example_runs(name: str, kind: str, code: str, tmp_path: Path) -> None:
    assert kind in {"script", "pytest", "redis"}, f"{name}: unknown example kind {kind!r}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSEF_")} | {"PYTHONUNBUFFERED": "1"}
    if kind == "redis":
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does it)")
        redis = RedisServer(tmp_path)
        redis.start()
        env["REDIS_URL"] = redis.url
    try:
        done = _run(kind, code, tmp_path, env)
    finally:
        if kind == "redis":
            redis.stop()
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if "ConsoleSpanExporter" in code:  # the OpenTelemetry demo shows its spans
        assert '"name": "KSeF online session"' in done.stdout
        assert '"name": "KSeF post_sessions_online"' in done.stdout


def _run(kind: str, code: str, tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if kind == "pytest":
        (tmp_path / "test_example.py").write_text(code + "\n", encoding="utf-8")
        args = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "test_example.py"]
    else:
        (tmp_path / "example.py").write_text(code + "\n", encoding="utf-8")
        args = [sys.executable, "example.py"]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
