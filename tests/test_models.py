"""The generated models and the converter against the bundled spec: coverage, examples, wire rules."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import cattrs
import pytest

import ksef_async.models as m
from ksef_async.models import make_converter, structure, unstructure
from ksef_async.models._meta import KEEP_NULL

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = json.loads((ROOT / "schemas" / "openapi.json").read_text(encoding="utf-8"))
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
STRICT = make_converter(forbid_extra_keys=True)


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_models", ROOT / "tools" / "generate_models.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------
# Generation


def test_checked_in_output_matches_a_fresh_generation() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "generate_models.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"generated files are stale; run tools/generate_models.py\n{result.stdout}"


def test_every_component_schema_has_a_python_definition() -> None:
    for name, schema in SCHEMAS.items():
        obj = getattr(m, name)
        if "enum" in schema:
            assert issubclass(obj, enum.StrEnum), name
            assert [member.value for member in obj] == schema["enum"], name
        elif schema["type"] == "object":
            assert attrs.has(obj), name
            wire = {m.wire_name(f) for f in attrs.fields(obj)}
            assert wire == set(schema["properties"]), name
        else:
            expected = {"string": str, "integer": int}[schema["type"]]
            if schema.get("format") == "byte":
                expected = bytes
            assert obj is expected, name
    # The one inline object of the spec gets a class of its own.
    assert attrs.has(m.TooManyRequestsResponseStatus)
    assert m.__all__ == sorted(m.__all__)


def test_required_fields_are_mandatory_and_optional_ones_default_to_none() -> None:
    fields = attrs.fields_dict(m.SessionStatusResponse)
    assert fields["status"].default is attrs.NOTHING
    assert fields["date_created"].default is attrs.NOTHING
    assert fields["valid_until"].default is None
    with pytest.raises(TypeError):
        m.SessionStatusResponse()  # type: ignore[call-arg]


def test_generator_translates_the_constructs_the_spec_uses() -> None:
    gen = _load_generator()
    writer = gen.ModelWriter(
        {
            "Kind": {"type": "string", "enum": ["A", "Bb"]},
            "Thing": {
                "type": "object",
                "required": ["must", "mayBeNull"],
                "properties": {
                    "must": {"allOf": [{"$ref": "#/components/schemas/Kind"}]},
                    "mayBeNull": {"type": "string", "format": "date-time", "nullable": True},
                    "sizeInMB": {"type": "integer"},
                    "tags": {"type": "array", "items": {"$ref": "#/components/schemas/Kind"}},
                    "extra": {"type": "object", "additionalProperties": {"type": "string", "nullable": True}},
                    "inner": {"type": "object", "properties": {"x": {"type": "number"}}},
                },
            },
        }
    )
    source = writer.render()
    assert "    must: Kind | str\n" in source
    assert "may_be_null: datetime.datetime | None = attrs.field(default=None, metadata={KEEP_NULL: True})" in source
    assert "size_in_mb: int | None = attrs.field(default=None, metadata={WIRE_NAME: 'sizeInMB'})" in source
    assert "tags: tuple[Kind | str, ...] | None = None" in source
    assert "extra: dict[str, str | None] | None = None" in source
    assert "inner: ThingInner | None = None" in source
    assert "class ThingInner:" in source
    assert "    x: decimal.Decimal | None = None" in source
    assert "    BB = 'Bb'" in source


@pytest.mark.parametrize("construct", ["oneOf", "anyOf"])
def test_generator_refuses_constructs_it_does_not_translate(construct: str) -> None:
    gen = _load_generator()
    writer = gen.ModelWriter(
        {"T": {"type": "object", "properties": {"p": {construct: [{"type": "string"}, {"type": "integer"}]}}}}
    )
    with pytest.raises(gen.SpecError, match=f"T.p: {construct}"):
        writer.render()


# ---------------------------------------------------------------------------------------------------------------
# Every example of the spec round-trips


def _body_schema_name(schema: dict[str, Any]) -> tuple[str, bool]:
    if schema.get("type") == "array":
        return _body_schema_name(schema["items"])[0], True
    if "allOf" in schema:
        (schema,) = schema["allOf"]
    return schema["$ref"].rsplit("/", 1)[-1], False


def _examples() -> list[Any]:
    cases = []
    for path, item in SPEC["paths"].items():
        for method, op in item.items():
            bodies = [("request", op["requestBody"])] if "requestBody" in op else []
            bodies += [(status, response) for status, response in op["responses"].items()]
            for where, body in bodies:
                for media, content in body.get("content", {}).items():
                    examples = [content["example"]] if "example" in content else []
                    examples += [e["value"] for e in content.get("examples", {}).values()]
                    for i, example in enumerate(examples):
                        if media == "application/xml":
                            continue  # XML bodies are the xml package's business, not a JSON model's
                        name, is_list = _body_schema_name(content["schema"])
                        case_id = f"{method.upper()} {path} {where} {media} #{i}"
                        cases.append(pytest.param(name, is_list, example, id=case_id))
    for name, schema in SCHEMAS.items():
        if "example" in schema:
            cases.append(pytest.param(name, False, schema["example"], id=f"schema {name}"))
    return cases


EXAMPLES = _examples()

# Examples the spec got wrong against its own schema. Each fix checks the defect is still there, so this table
# cannot outlive a corrected spec.
MISSING_REQUIRED: dict[str, dict[str, Any]] = {
    # `authenticationMethodInfo` became required in 2.1.0; the endpoint's eight examples predate it.
    "AuthenticationOperationStatusResponse": {
        "authenticationMethodInfo": {"category": "Token", "code": "Token.Ksef", "displayName": "Token KSeF"}
    },
    # The per-invoice status example lacks the required `invoiceHash`.
    "SessionInvoiceStatusResponse": {"invoiceHash": "EbrK4cOSjW4hEpJaHU71YXSOZZmqP5++dK9nLgTzgV4="},
}
# Same, inside each item of an array field: (schema, field) -> the keys its items lack.
MISSING_REQUIRED_IN_ITEMS: dict[tuple[str, str], dict[str, Any]] = {
    # The collective-identifier invoice list example omits each item's required `collectiveIdentifierNumber`.
    ("CollectiveIdentifierInvoicesQueryResponse", "invoices"): {
        "collectiveIdentifierNumber": "1111111111-IZ202607-65ED02180000-E7"
    },
}
# Some examples abbreviate base64 payloads (`"..."`, `"MIIBIjAN...pH..."`): not base64, so they are replaced.
VALID_BASE64 = "MIIBCgKCAQEAwocTwdNgt2+PXJ2fcB7k1kn5eFUTXBeep9pH"


def _unabbreviate(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unabbreviate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unabbreviate(v) for v in value]
    return VALID_BASE64 if isinstance(value, str) and value.endswith("...") else value


def _fix_example(name: str, example: Any) -> Any:
    for key, value in MISSING_REQUIRED.get(name, {}).items():
        assert key not in example, f"the spec's {name} example now has {key}: drop it from MISSING_REQUIRED"
        example = {**example, key: value}
    for (schema, field), missing in MISSING_REQUIRED_IN_ITEMS.items():
        if schema == name:
            for key in missing:
                assert all(key not in item for item in example[field]), f"{name}.{field} items now have {key}"
            example = {**example, field: [{**item, **missing} for item in example[field]]}
    return _unabbreviate(example)


def _normalise(value: Any) -> Any:
    """Compare date-times by instant and offset, not text.

    The only normalisation: ``datetime`` keeps microseconds, so KSeF's 7th fractional digit
    (``...56.0154302``) comes back as ``...56.015430``; the value and the offset must survive.
    """
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, str) and len(value) >= 19 and value[4] == "-" and value[10] == "T":
        parsed = dt.datetime.fromisoformat(value)
        return ("datetime", parsed.replace(tzinfo=None), parsed.utcoffset())
    return value


def test_the_examples_cover_the_spec() -> None:
    assert len(EXAMPLES) >= 80


@pytest.mark.parametrize(("name", "is_list", "example"), EXAMPLES)
def test_spec_example_round_trips(name: str, is_list: bool, example: Any) -> None:
    cls = getattr(m, name)
    example = _fix_example(name, example)
    # Strict: a key no model field claims would mean the models miss part of the spec.
    if is_list:
        back: Any = [unstructure(STRICT.structure(item, cls)) for item in example]
    else:
        back = unstructure(STRICT.structure(example, cls))
    assert _normalise(back) == _normalise(example)
    assert json.loads(json.dumps(back)) == back  # JSON-ready as it is


def test_truncated_certificate_example_is_rejected_naming_the_field() -> None:
    content = SPEC["paths"]["/security/public-key-certificates"]["get"]["responses"]["200"]["content"]
    with pytest.raises(cattrs.BaseValidationError) as info:
        structure(content["application/json"]["example"], tuple[m.PublicKeyCertificate, ...])
    lines = cattrs.transform_error(info.value)
    assert lines == [f"invalid value for type, expected bytes @ $[{i}].certificate" for i in range(len(lines))]


def test_stale_example_is_rejected_without_the_missing_field() -> None:
    example = SPEC["paths"]["/auth/{referenceNumber}"]["get"]["responses"]["200"]["content"]["application/json"]
    value = next(iter(example["examples"].values()))["value"]
    with pytest.raises(cattrs.ClassValidationError) as info:
        structure(value, m.AuthenticationOperationStatusResponse)
    assert "authentication_method_info" in str(cattrs.transform_error(info.value))


# ---------------------------------------------------------------------------------------------------------------
# Wire rules

STATUS = {"code": 200, "description": "Sesja przetworzona"}


def _session_status(**extra: Any) -> dict[str, Any]:
    return {"status": STATUS, "dateCreated": "2025-07-11T12:23:56+00:00", "dateUpdated": "2025-07-11T12:23:57Z"} | extra


def test_unknown_fields_are_ignored_but_the_strict_variant_rejects_them() -> None:
    data = _session_status(someFieldFromTomorrow={"x": 1}, status={**STATUS, "alsoNew": True})
    obj = structure(data, m.SessionStatusResponse)
    assert obj.status == m.StatusInfo(code=200, description="Sesja przetworzona")
    assert "someFieldFromTomorrow" not in unstructure(obj)
    with pytest.raises(cattrs.ClassValidationError) as info:
        STRICT.structure(data, m.SessionStatusResponse)
    assert "someFieldFromTomorrow" in str(cattrs.transform_error(info.value))


def test_unknown_enum_value_is_kept_as_text_and_known_values_become_members() -> None:
    known = structure({"category": "Token", "code": "c", "displayName": "d"}, m.AuthenticationMethodInfo)
    assert known.category is m.AuthenticationMethodCategory.TOKEN
    novel = structure({"category": "QuantumLink", "code": "c", "displayName": "d"}, m.AuthenticationMethodInfo)
    assert novel.category == "QuantumLink"
    assert not isinstance(novel.category, enum.Enum)
    assert unstructure(novel)["category"] == "QuantumLink"
    assert type(unstructure(known)["category"]) is str
    # Enum values inside arrays follow the same rule.
    roles = structure(["InvoiceWrite", "Teleport"], tuple[m.TokenPermissionType | str, ...])
    assert roles == (m.TokenPermissionType.INVOICE_WRITE, "Teleport")


def test_optional_enum_field_accepts_null_and_absence() -> None:
    base: dict[str, Any] = {
        "authenticationMethodInfo": {"category": "Token", "code": "c", "displayName": "d"},
        "startDate": "2025-07-11T12:23:56+00:00",
        "status": STATUS,
    }
    absent = structure(base, m.AuthenticationOperationStatusResponse)
    null = structure(base | {"authenticationMethod": None}, m.AuthenticationOperationStatusResponse)
    known = structure(base | {"authenticationMethod": "Token"}, m.AuthenticationOperationStatusResponse)
    assert absent.authentication_method is None
    assert null.authentication_method is None
    assert known.authentication_method is m.AuthenticationMethod.TOKEN
    assert "authenticationMethod" not in unstructure(null)


def test_non_text_enum_value_is_an_error() -> None:
    with pytest.raises(cattrs.ClassValidationError):
        structure({"category": 7, "code": "c", "displayName": "d"}, m.AuthenticationMethodInfo)


@pytest.mark.parametrize(
    ("text", "offset", "micro", "written"),
    [
        ("2025-07-11T12:23:56.0154302+00:00", dt.timedelta(0), 15430, "2025-07-11T12:23:56.015430+00:00"),
        ("2025-07-11T14:23:56.1+02:00", dt.timedelta(hours=2), 100000, "2025-07-11T14:23:56.100000+02:00"),
        ("2025-07-11T12:23:56Z", dt.timedelta(0), 0, "2025-07-11T12:23:56+00:00"),
        ("2025-07-11T07:23:56-05:00", dt.timedelta(hours=-5), 0, "2025-07-11T07:23:56-05:00"),
    ],
)
def test_date_time_keeps_its_offset(text: str, offset: dt.timedelta, micro: int, written: str) -> None:
    data = {"referenceNumber": "20250625-SO-2C3E6C8000-B675CF5D68-07", "validUntil": text}
    obj = structure(data, m.OpenOnlineSessionResponse)
    assert obj.valid_until.utcoffset() == offset
    assert obj.valid_until.microsecond == micro
    assert unstructure(obj)["validUntil"] == written


def test_date_time_without_offset_stays_naive() -> None:
    obj = structure({"referenceNumber": "r", "validUntil": "2025-10-11T12:23:56.0154302"}, m.OpenOnlineSessionResponse)
    assert obj.valid_until.tzinfo is None
    assert unstructure(obj)["validUntil"] == "2025-10-11T12:23:56.015430"


def test_malformed_date_time_is_an_error_naming_the_field() -> None:
    with pytest.raises(cattrs.ClassValidationError) as info:
        structure({"referenceNumber": "r", "validUntil": "11/07/2025"}, m.OpenOnlineSessionResponse)
    assert "valid_until" in str(cattrs.transform_error(info.value))


def test_bytes_round_trip_through_base64() -> None:
    payload = bytes(range(256)) * 3
    digest = bytes(range(32))
    request = m.SendInvoiceRequest(
        invoice_hash=digest,
        invoice_size=10,
        encrypted_invoice_hash=digest,
        encrypted_invoice_size=len(payload),
        encrypted_invoice_content=payload,
    )
    wire = unstructure(request)
    assert wire["encryptedInvoiceContent"].isascii()
    assert wire["invoiceHash"] == "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    assert structure(wire, m.SendInvoiceRequest) == request


def test_malformed_base64_is_an_error() -> None:
    wire = {
        "invoiceHash": "not base64!",
        "invoiceSize": 1,
        "encryptedInvoiceHash": "",
        "encryptedInvoiceSize": 1,
        "encryptedInvoiceContent": "",
    }
    with pytest.raises(cattrs.ClassValidationError) as info:
        structure(wire, m.SendInvoiceRequest)
    assert cattrs.transform_error(info.value) == ["invalid value for type, expected bytes @ $.invoice_hash"]


def test_optional_none_fields_are_omitted_when_unstructuring() -> None:
    request = m.InvoiceQueryAmount(type=m.AmountType.BRUTTO, from_=decimal.Decimal("10.50"))
    assert unstructure(request) == {"type": "Brutto", "from": 10.5}


def test_required_nullable_fields_keep_an_explicit_null() -> None:
    # The bundled spec has no required nullable property today; the rule must hold when one appears.
    @attrs.frozen(kw_only=True)
    class Probe:
        must_send: str | None = attrs.field(default=None, metadata={KEEP_NULL: True})
        may_send: str | None = None

    assert unstructure(Probe()) == {"mustSend": None}


def test_amounts_are_exact_decimals() -> None:
    amount = structure({"type": "Netto", "from": 0.1, "to": 1234567890123.45}, m.InvoiceQueryAmount)
    assert amount.from_ == decimal.Decimal("0.1")
    assert amount.to == decimal.Decimal("1234567890123.45")
    assert structure({"type": "Netto", "from": "12.30"}, m.InvoiceQueryAmount).from_ == decimal.Decimal("12.30")


def test_wire_names_that_are_not_plain_camel_case() -> None:
    data = {"maxInvoiceSizeInMB": 1, "maxInvoiceWithAttachmentSizeInMB": 3, "maxInvoices": 10000}
    limits = structure(data, m.OnlineSessionContextLimitsOverride)
    assert limits.max_invoice_size_in_mb == 1
    assert unstructure(limits)["maxInvoiceWithAttachmentSizeInMB"] == 3


def test_scalars_are_not_coerced() -> None:
    with pytest.raises(cattrs.ClassValidationError):
        structure({"code": "200", "description": "x"}, m.StatusInfo)
    with pytest.raises(cattrs.ClassValidationError):
        structure({"code": True, "description": "x"}, m.StatusInfo)


def test_models_are_frozen_values() -> None:
    info = m.StatusInfo(code=200, description="ok", details=("a",))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.code = 300  # type: ignore[misc]
    assert hash(info) == hash(m.StatusInfo(code=200, description="ok", details=("a",)))


# ---------------------------------------------------------------------------------------------------------------
# Reprs never print secrets (they reach logs and tracebacks)

SIG = "s3cr3tSig%2Fvalue"  # percent-encoded as a real SAS signature is
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLW9mLWp3dA"
SAS_URL = f"https://ksef.example/upo/part-1.xml?sv=2024-05-04&se=2026-01-01T00%3A00%3A00Z&sp=r&sig={SIG}"


def _no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, text
        assert secret.replace("%2F", "/") not in text, text


def test_pre_signed_urls_print_without_their_signature() -> None:
    part = structure(
        {"ordinalNumber": 1, "method": "PUT", "url": SAS_URL, "headers": {"x-ms-blob-type": "BlockBlob"}},
        m.PartUploadRequest,
    )
    page = structure(
        {"referenceNumber": "20250625-EU-2C3E6C8000-B675CF5D68-07", "downloadUrl": SAS_URL,
         "downloadUrlExpirationDate": "2026-01-01T00:00:00+00:00"},
        m.UpoPageResponse,
    )  # fmt: skip
    for model in (part, page):
        text = repr(model)
        _no_secret(text, SIG)
        # The rest of the URL stays readable: which host and file, and when the link expires.
        assert "https://ksef.example/upo/part-1.xml?" in text
        assert "sig=REDACTED" in text
    # Redaction is only in the repr: the value and the wire form keep the working URL.
    assert part.url == SAS_URL
    assert unstructure(page)["downloadUrl"] == SAS_URL


def test_optional_url_prints_none_or_redacted() -> None:
    base = {
        "ordinalNumber": 1,
        "referenceNumber": "20250625-EE-319D7EE000-B67F415CDC-2C",
        "invoiceHash": "mkht+3m5trnfxlTYhq3QFn74LkEO69MFNlsMAkCDSPA=",
        "invoicingDate": "2025-06-25T12:00:00+00:00",
        "status": {"code": 200, "description": "Sukces"},
    }
    without = structure(base, m.SessionInvoiceStatusResponse)
    assert "upo_download_url=None" in repr(without)
    with_url = structure({**base, "upoDownloadUrl": SAS_URL}, m.SessionInvoiceStatusResponse)
    _no_secret(repr(with_url), SIG)
    assert "sig=REDACTED" in repr(with_url)


def test_tokens_print_redacted() -> None:
    tokens = structure(
        {
            "accessToken": {"token": JWT, "validUntil": "2026-01-01T00:15:00+00:00"},
            "refreshToken": {"token": JWT + "R", "validUntil": "2026-01-08T00:00:00+00:00"},
        },
        m.AuthenticationTokensResponse,
    )
    generated = structure(
        {
            "referenceNumber": "20251010-EC-1DCE3E3000-12ECB5B36E-45",
            "token": "20251010-EC-1DCE|nip-5265877635|q9Zx7wKt",
        },
        m.GenerateTokenResponse,
    )
    text = repr(tokens) + repr(generated)
    _no_secret(text, JWT, "q9Zx7wKt", "nip-5265877635")
    assert text.count("token=<redacted>") == 3
    assert "valid_until=datetime.datetime(2026, 1, 8" in text  # the harmless fields still print
    assert tokens.refresh_token.token == JWT + "R"


def test_encrypted_credentials_print_redacted() -> None:
    secret = b"encrypted-key-material"
    request = m.InitTokenAuthenticationRequest(
        challenge="20250625-CR-20F5EE4000-DA48AE4124-46",
        context_identifier=m.AuthenticationContextIdentifier(type="Nip", value="5265877635"),
        encrypted_token=secret,
    )
    info = m.EncryptionInfo(encrypted_symmetric_key=secret, initialization_vector=b"iv-iv-iv-iv-iv-i")
    text = repr(request) + repr(info)
    _no_secret(text, "encrypted-key-material", "ZW5jcnlwdGVk")  # raw bytes nor base64 form
    assert "encrypted_token=<redacted>" in text
    assert "encrypted_symmetric_key=<redacted>" in text


def test_every_url_field_of_the_spec_has_a_redacting_repr() -> None:
    found = []
    for name, schema in SCHEMAS.items():
        for wire, prop in schema.get("properties", {}).items():
            if prop.get("format") == "uri" or wire.endswith("Url") or wire == "url":
                field = next(f for f in attrs.fields(getattr(m, name)) if _camel(f.name) == wire)
                assert callable(field.repr), f"{name}.{wire}"
                found.append(f"{name}.{wire}")
    assert {"PartUploadRequest.url", "UpoPageResponse.downloadUrl", "InvoicePackagePart.url"} <= set(found)


def _camel(attr: str) -> str:
    head, *rest = attr.rstrip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def test_generator_refuses_an_unclassified_credential_looking_field() -> None:
    generator = _load_generator()
    schemas = {"NewThing": {"type": "object", "properties": {"apiSecret": {"type": "string"}}}}
    with pytest.raises(generator.SpecError, match=r"NewThing\.apiSecret"):
        generator.ModelWriter(schemas).render()
    # A listed harmless name and a URL pass, the URL with a redacting repr.
    schemas = {"NewThing": {"type": "object", "properties": {"continuationToken": {"type": "string"},
                                                             "nextUrl": {"type": "string"}}}}  # fmt: skip
    source = generator.ModelWriter(schemas).render()
    assert "next_url: str | None = attrs.field(default=None, repr=_url_repr)" in source
    assert "continuation_token: str | None = None" in source
