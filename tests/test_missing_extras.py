"""Every optional feature used without its extra raises one `MissingExtraError` naming the extra and the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ksef_async.core.extras import EXTRAS, require_extra
from ksef_async.core.zipstream import deflate_backend
from ksef_async.errors import ConfigurationError, MissingExtraError


def _one_line(exc: MissingExtraError, extra: str, module: str) -> None:
    text = str(exc)
    assert "\n" not in text
    assert f"'{extra}' extra" in text
    assert f"({module} is not installed)" in text
    assert text.endswith(f"pip install 'ksef-async[{extra}]'")
    assert (exc.extra, exc.module) == (extra, module)
    assert isinstance(exc, ConfigurationError)


def test_strict_contract_mode_without_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    from ksef_async.testing.simulator import KsefSimulator  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "jsonschema", None)
    with pytest.raises(MissingExtraError) as info:
        KsefSimulator([], strict_contract=True)
    _one_line(info.value, "test", "jsonschema")
    assert str(info.value).startswith("the simulator's strict contract mode: ")
    KsefSimulator([])  # without strict mode nothing needs it


def test_qr_images_without_segno(monkeypatch: pytest.MonkeyPatch) -> None:
    from ksef_async.qr_image import qr_matrix  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "segno", None)
    with pytest.raises(MissingExtraError) as info:
        qr_matrix("https://qr-test.ksef.mf.gov.pl/invoice/5265877635/01-02-2026/abc")
    _one_line(info.value, "qr", "segno")


def test_fast_deflate_asked_for_explicitly_without_isal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)
    monkeypatch.delitem(sys.modules, "isal.isal_zlib", raising=False)
    with pytest.raises(MissingExtraError) as info:
        deflate_backend("isal")
    _one_line(info.value, "fast", "isal")
    import zlib  # noqa: PLC0415

    assert deflate_backend("zlib") is zlib


@pytest.mark.parametrize(("extra", "module"), [("redis", "redis"), ("otel", "opentelemetry")])
def test_redis_and_opentelemetry(monkeypatch: pytest.MonkeyPatch, extra: str, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError) as info:
        require_extra(module, extra=extra)
    _one_line(info.value, extra, module)
    assert str(info.value).startswith(EXTRAS[extra][0])


def test_a_redis_limits_url_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from ksef_async.ratelimit_redis import RedisLimits  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.delitem(sys.modules, "redis.asyncio", raising=False)
    with pytest.raises(MissingExtraError) as info:
        RedisLimits("redis://127.0.0.1:6379/0")
    _one_line(info.value, "redis", "redis")


def test_a_worker_without_arq(monkeypatch: pytest.MonkeyPatch) -> None:
    from ksef_async import workers  # noqa: PLC0415

    monkeypatch.setitem(sys.modules, "arq", None)
    with pytest.raises(MissingExtraError) as info:
        workers.main()
    _one_line(info.value, "workers", "arq")


def test_an_installed_module_failing_inside_is_not_hidden(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "ksef_async_fake_extra.py").write_text("import ksef_async_not_there_at_all\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="ksef_async_not_there_at_all"):
        require_extra("ksef_async_fake_extra", extra="qr")


def test_cli_without_cyclopts_exits_2_with_one_line() -> None:
    code = "import sys; sys.modules['cyclopts'] = None; from ksef_async.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr == (
        "ksef-async: the command line: needs the 'cli' extra (cyclopts is not installed); "
        "install it with: pip install 'ksef-async[cli]'\n"
    )
