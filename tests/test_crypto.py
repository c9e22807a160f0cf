import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from ksef_async.core import crypto
from ksef_async.errors import CryptoError

KEY = crypto.SessionKey(bytes(range(32)), bytes(range(16)))


def _oneshot(data: bytes) -> bytes:
    return crypto.encrypt_cbc(KEY, data)


@given(st.binary(max_size=5000), st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20))
def test_streaming_encrypt_equals_oneshot_at_any_chunking(data: bytes, cuts: list[int]) -> None:
    enc = KEY.encryptor()
    out = bytearray()
    buf = bytearray(crypto.AesCbcEncryptor.buffer_size(max(cuts)))
    pos, i = 0, 0
    while pos < len(data):
        size = cuts[i % len(cuts)]
        i += 1
        n = enc.update_into(data[pos : pos + size], buf)
        out += buf[:n]
        pos += size
    out += enc.finalize()
    assert bytes(out) == _oneshot(data)
    assert len(out) == crypto.encrypted_size(len(data))


@given(st.binary(max_size=5000), st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=20))
def test_streaming_decrypt_round_trips(data: bytes, cuts: list[int]) -> None:
    ciphertext = _oneshot(data)
    dec = KEY.decryptor()
    out = bytearray()
    pos, i = 0, 0
    while pos < len(ciphertext):
        size = cuts[i % len(cuts)]
        i += 1
        out += dec.update(ciphertext[pos : pos + size])
        pos += size
    out += dec.finalize()
    assert bytes(out) == data


def test_ciphertext_sizes_from_spec_examples() -> None:
    # the spec's examples (invoiceSize 6480, fileSize 16037, partSize 22425060) and the bundled FA(3) sample (13215)
    for plain, cipher in [(6480, 6496), (16037, 16048), (22425060, 22425072), (13215, 13216)]:
        assert crypto.encrypted_size(plain) == cipher
    assert len(_oneshot(b"x" * 6480)) == 6496


def test_matches_reference_cbc_pkcs7() -> None:
    data = b"invoice" * 1000
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    enc = Cipher(algorithms.AES(KEY.key), modes.CBC(KEY.iv)).encryptor()
    assert _oneshot(data) == enc.update(padded) + enc.finalize()


def test_wrong_key_is_reported() -> None:
    other = crypto.SessionKey(bytes(32), bytes(16))
    with pytest.raises(CryptoError):
        crypto.decrypt_cbc(other, _oneshot(b"secret invoice"))
    with pytest.raises(CryptoError):
        crypto.decrypt_cbc(KEY, _oneshot(b"abc")[:-1])


def test_session_key_repr_hides_key() -> None:
    key = crypto.SessionKey.generate()
    assert key.key.hex() not in repr(key)
    assert "redacted" in repr(key)
    with pytest.raises(CryptoError):
        crypto.SessionKey(b"short", bytes(16))


def test_rsa_oaep_round_trip_and_token_format() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrapped = KEY.wrap(private.public_key())
    assert crypto.rsa_oaep_decrypt(private, wrapped) == KEY.key
    encrypted = crypto.encrypt_ksef_token(private.public_key(), "ref|nip-123|abc", 1_700_000_000_123)
    assert crypto.rsa_oaep_decrypt(private, crypto.b64decode(encrypted)) == b"ref|nip-123|abc|1700000000123"


def test_sha256_b64_of_official_sample(samples_dir) -> None:  # type: ignore[no-untyped-def]
    data = (samples_dir / "invoices" / "fa3-invoice-sample.xml").read_bytes()
    assert len(data) == 13215
    assert crypto.sha256_b64(data) == "OmE5U9cjvIU6pc3yL3bxV0D96hteDTCwMdB0gaJ5KhM="
    assert crypto.sha256_b64(b"") == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    assert len(crypto.sha256_b64(hashlib.sha256(b"x").digest())) == 44


def _cert(private: rsa.RSAPrivateKey, start: dt.datetime, end: dt.datetime) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Ministerstwo Finansów")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_select_public_key_prefers_latest_valid_from() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    day = dt.timedelta(days=1)
    der = _cert(private, now - 400 * day, now + 400 * day)
    old = crypto.MfPublicKey(der, now - 300 * day, now + 30 * day, ("KsefTokenEncryption",), "old")
    new = crypto.MfPublicKey(der, now - 10 * day, now + 300 * day, ("KsefTokenEncryption",), "new")
    future = crypto.MfPublicKey(der, now + day, now + 300 * day, ("KsefTokenEncryption",), "future")
    sym = crypto.MfPublicKey(der, now - day, now + day, ("SymmetricKeyEncryption",), "sym")
    keys = [old, new, future, sym]
    assert crypto.select_public_key(keys, crypto.KEY_USAGE_TOKEN, now).public_key_id == "new"
    assert crypto.select_public_key(keys, crypto.KEY_USAGE_SYMMETRIC, now).public_key_id == "sym"
    with pytest.raises(CryptoError, match="SymmetricKeyEncryption"):
        crypto.select_public_key([old, new], crypto.KEY_USAGE_SYMMETRIC, now)
    assert isinstance(new.rsa_public_key(), rsa.RSAPublicKey)
    from_api = crypto.MfPublicKey.from_api(crypto.b64(der), now, now + day, ["SymmetricKeyEncryption"])
    assert from_api.certificate_der == der
