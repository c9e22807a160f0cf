"""The connection record of a state directory: round trip, malformed input, the secret a re-run needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ksef_async.cli._connection import Connection
from ksef_async.cli._remember import load_record, recalled, record_of, remember
from ksef_async.core.connection_record import ConnectionRecord
from ksef_async.errors import ConfigurationError

NIP = "5265877635"


def test_round_trip_and_no_secret(tmp_path: Path) -> None:
    conn = Connection(env="test", nip=NIP, pkcs12=Path("keys/me.p12"), key_password="hunter2", fingerprint=True)
    record = record_of(conn)
    assert record.pkcs12 == str(Path("keys/me.p12").absolute())
    remember(tmp_path, record)
    text = (tmp_path / "connection.json").read_text()
    assert "hunter2" not in text
    assert load_record(tmp_path) == record
    assert record.needed_secret() == ("KSEF_KEY_PASSWORD", "the PKCS#12 file's password")


def test_missing_secret_is_named(tmp_path: Path) -> None:
    record = record_of(Connection(base_url="http://127.0.0.1:1/v2", nip=NIP, pkcs12=Path("a.p12"), key_password="x"))
    with pytest.raises(ConfigurationError, match="set KSEF_KEY_PASSWORD"):
        recalled(Connection(), record, command="resume", source=tmp_path / "connection.json")
    filled = recalled(Connection(key_password="x"), record, command="resume", source=tmp_path)
    assert (filled.base_url, filled.nip, filled.pkcs12) == ("http://127.0.0.1:1/v2", NIP, Path("a.p12").absolute())


def test_another_server_is_refused_and_the_same_one_through_env_is_not(tmp_path: Path) -> None:
    record = record_of(Connection(env="demo", nip=NIP, token="t"))
    with pytest.raises(ConfigurationError, match="api-demo"):
        recalled(Connection(env="test", token="t"), record, command="resume", source=tmp_path)
    same = recalled(
        Connection(base_url="https://api-demo.ksef.mf.gov.pl/v2", token="t"), record, command="resume", source=tmp_path
    )
    assert same.nip == NIP
    assert recalled(Connection(), None, command="resume", source=tmp_path) == Connection()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("nope", "not JSON"),
        ('{"version": 2}', "version 1"),
        ('{"version": 1, "auth": []}', "'auth' must be an object"),
        ('{"version": 1, "auth": {"method": "magic"}}', "auth_method"),
        ('{"version": 1, "auth": {"keyPassword": "yes"}}', "'keyPassword' must be true or false"),
        ('{"version": 1, "baseUrl": 5, "auth": {}}', "'baseUrl' must be a string"),
    ],
)
def test_malformed_records_are_refused_with_the_field(text: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        ConnectionRecord.from_json(text)


def test_a_prepared_directory_gives_the_server_and_the_rest_comes_from_the_options(tmp_path: Path) -> None:
    record = ConnectionRecord(base_url="http://127.0.0.1:1/v2")  # what `prepare --base-url` records
    assert record.needed_secret() is None
    filled = recalled(Connection(nip=NIP, token="t"), record, command="resume", source=tmp_path)
    assert (filled.base_url, filled.nip, filled.token) == ("http://127.0.0.1:1/v2", NIP, "t")
