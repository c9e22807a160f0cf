"""Unit tests of the pure guards against hostile input: names, paths, pages, base URLs, server text."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest

from ksef_async.client import ClientConfig, KsefClient
from ksef_async.core.baseurl import check_base_url, is_loopback_host
from ksef_async.core.paging import PageGuard
from ksef_async.core.redact import redact_server_text
from ksef_async.core.safepath import checked_ksef_number, checked_reference_number, safe_join
from ksef_async.errors import (
    ApiErrorDetail,
    ConfigurationError,
    ProtocolError,
    RateLimitedError,
    api_error_from_response,
    parse_retry_after,
)
from ksef_async.transport._limits import check_retry_after

VALID = "5265877635-20250626-010080DD2B5E-26"


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "..", ".", "", "a/b", "a\\b", ".hidden", "x\0y", "a" * 201])
def test_safe_join_refuses_anything_but_one_plain_name(bad: str) -> None:
    with pytest.raises(ProtocolError):
        safe_join(PurePosixPath("/out"), bad)


def test_safe_join_accepts_invoice_and_metadata_names() -> None:
    assert safe_join(PurePosixPath("/out"), f"{VALID}.xml") == PurePosixPath(f"/out/{VALID}.xml")
    assert safe_join(PurePosixPath("/out"), "_metadata.json").name == "_metadata.json"


@pytest.mark.parametrize("bad", ["../x", "/abs", VALID + "/../x", VALID[:-1], 42, None])
def test_ksef_numbers_follow_the_spec_pattern(bad: object) -> None:
    assert checked_ksef_number(VALID) == VALID
    with pytest.raises(ProtocolError, match="not a KSeF number"):
        checked_ksef_number(bad)


def test_reference_numbers_are_36_safe_characters() -> None:
    good = "20251010-SO-0123456789-ABCDEF0123-01"
    assert checked_reference_number(good) == good
    for bad in ["../../" + good[6:], good + "x", "20251010/SO-0123456789-ABCDEF0123-01"]:
        with pytest.raises(ProtocolError, match="not a reference number"):
            checked_reference_number(bad)


def test_the_offending_value_is_named_shortened_and_redacted() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    with pytest.raises(ProtocolError) as caught:
        checked_ksef_number(f"../{jwt}" + "x" * 500)
    text = str(caught.value)
    assert jwt not in text
    assert "<redacted-jwt>" in text
    assert len(text) < 200


def test_page_guard_detects_repeated_tokens_empty_pages_and_caps_pages() -> None:
    guard = PageGuard("op")
    guard.page()
    guard.token("a")
    guard.page()
    guard.token("b")
    with pytest.raises(ProtocolError, match="repeated a continuationToken"):
        guard.token("a")
    with pytest.raises(ProtocolError, match="empty page"):
        PageGuard("op").page(items=0, has_more=True)
    PageGuard("op").page(items=0, has_more=False)
    capped = PageGuard("op", max_pages=3)
    capped.page()
    capped.page()
    with pytest.raises(ProtocolError, match="after 3 pages"):
        capped.page()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "[::1]", "localhost", "sim.localhost"])
def test_plain_http_is_fine_for_loopback(host: str) -> None:
    assert is_loopback_host(host.strip("[]"))
    assert check_base_url(f"http://{host}:8080/v2")


@pytest.mark.parametrize(
    "url", ["http://api-test.ksef.mf.gov.pl/v2", "http://10.0.0.5/v2", "http://localhost.evil.com/"]
)
def test_plain_http_to_another_host_needs_the_explicit_option(url: str) -> None:
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        check_base_url(url)
    assert check_base_url(url, allow_insecure_http=True) == url
    assert check_base_url(url.replace("http://", "https://"))


def test_client_refuses_plain_http_to_a_remote_host() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        KsefClient("http://api.ksef.mf.gov.pl/v2")
    KsefClient("http://api.ksef.mf.gov.pl/v2", config=ClientConfig(allow_insecure_http=True))
    KsefClient("http://127.0.0.1:1/v2")


def test_server_text_loses_tokens_before_it_is_cut() -> None:
    token = "20251010-EC-0123456789-ABCDEF0123-01|nip-5265877635|" + "ab" * 32
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlc2lnbmF0dXJl"
    text = redact_server_text(f"{'x' * 490} Bearer {jwt} token={token}\x1b[2J")
    assert jwt[:10] not in text
    assert "ab" * 32 not in text
    assert "\x1b" not in text
    error = api_error_from_response(400, f"echo: Authorization: Bearer {jwt} ksef {token}".encode())
    assert jwt[:20] not in str(error)
    assert "ab" * 32 not in str(error)
    detail = ApiErrorDetail(1, f"Bearer {jwt}", (f"x {token}",))
    assert jwt not in detail.description
    assert "ab" * 32 not in detail.details[0]


def test_retry_after_beyond_an_hour_is_a_protocol_error() -> None:
    check_retry_after(RateLimitedError(429, retry_after=3600.0), "op")
    for value in ("1e300", "inf", "7200"):
        error = RateLimitedError(429, retry_after=parse_retry_after(value))
        with pytest.raises(ProtocolError, match="Retry-After"):
            check_retry_after(error, "op")
