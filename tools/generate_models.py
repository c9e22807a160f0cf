"""Generate the attrs models and the operation table from the bundled ``schemas/openapi.json``.

Usage::

    python tools/generate_models.py          # (re)write the generated modules
    python tools/generate_models.py --check  # exit 1 if the checked-in modules differ from a fresh run

Outputs (both checked in, both formatted with ``ruff format`` so a regeneration is byte-stable):

* ``ksef_async/models/_generated.py``: one Python definition per component schema. Object schemas become
  ``@attrs.frozen(kw_only=True)`` classes, string enums become ``enum.StrEnum`` classes, and the dozen scalar
  schemas (``Nip``, ``ReferenceNumber``, ``Sha256HashBase64``, ``RetryAfter`` ...) become ``TypeAlias`` names so
  that the wire value stays a plain JSON scalar. The one inline object of the spec
  (``TooManyRequestsResponse.status``) becomes ``TooManyRequestsResponseStatus``.
* ``ksef_async/models/__init__.py``: explicit re-exports of every model and of the converter helpers.
* ``ksef_async/_operations_table.py``: one ``OperationRow`` per (method, path) of the spec.

Type mapping: ``date-time`` -> ``datetime.datetime``, ``date`` -> ``datetime.date``, ``byte`` -> ``bytes``,
integers -> ``int``, ``number`` -> ``decimal.Decimal`` (the only numbers in the spec are invoice amounts, which
are summed and compared by callers; binary floats would drift), arrays -> ``tuple[T, ...]`` (models are frozen
values), ``additionalProperties`` -> ``dict[str, T]``. Every enum-typed field is ``Enum | str`` because KSeF adds
enum values without notice; the converter keeps an unknown value as the raw string.

Reprs: pre-signed URL fields print with their signature masked and credential fields print ``<redacted>``
(see ``SECRET_FIELDS``), because reprs reach logs and tracebacks.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import keyword
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "schemas" / "openapi.json"
MODELS_OUT = ROOT / "ksef_async" / "models" / "_generated.py"
TABLE_OUT = ROOT / "ksef_async" / "_operations_table.py"
INIT_OUT = ROOT / "ksef_async" / "models" / "__init__.py"
CONVERTER_API = ("converter", "enum_of", "make_converter", "structure", "unstructure", "wire_name")

HTTP_METHODS = ("get", "put", "post", "delete", "patch")
REF_PREFIX = "#/components/schemas/"
# The generated files are read by people: keep docstring lines well inside ruff's 110 columns.
DOC_WIDTH = 100
# The operations whose 429 table names no group (60/s, unauthenticated) count in the group GET /rate-limits
# calls `anonymous` ("Limity dla anonimowych operacji API (nieuwierzytelnionych)", 60/-1/-1 in its example).
PUBLIC_GROUP = "anonymous"
# Descriptions name the token an operation takes when it is not the access token.
TOKEN_NOTE = re.compile(r"Sposób uwierzytelnienia: (.*)")
TOKEN_KINDS = {"AccessToken": "access", "AuthenticationToken": "authentication", "RefreshToken": "refresh"}

# Reprs end up in logs and tracebacks, so fields that grant access are printed redacted. URLs (``format: uri``
# or a name ending in ``Url``/``url``) are pre-signed: their ``sig`` query value alone lets anyone download
# the UPO or export part, so it is masked and the rest of the URL kept for debugging.
URL_NAME = re.compile(r"^url$|Url$")
# Credentials, named one by one: the JWTs (access, refresh and authentication tokens are all ``TokenInfo``),
# the KSeF token itself, and the encrypted token and session key (encrypted, but a copy is a replayable
# credential). Their values are printed as a fixed ``<redacted>``.
SECRET_FIELDS = frozenset(
    {
        ("EncryptionInfo", "encryptedSymmetricKey"),
        ("GenerateTokenResponse", "token"),
        ("InitTokenAuthenticationRequest", "encryptedToken"),
        ("TokenInfo", "token"),
    }
)
# Any other scalar property whose name looks like a credential must be listed here as harmless, or the
# generator stops: a new secret in a future spec cannot slip into reprs unnoticed.
SECRET_LOOKING = re.compile(r"(?i)(?:token|key|secret|password)$")
NOT_SECRET = frozenset({"continuationToken"})  # an opaque paging cursor, useless without an access token
# Emitted into the models module: optional URL fields may be None, which ``redact_url`` does not take.
URL_REPR_HELPER = '''

def _url_repr(value: str | None) -> str:
    """Print a pre-signed URL without its signature (the ``sig`` value alone grants access)."""
    return repr(value if value is None else redact_url(value))'''

Schema = dict[str, Any]


class SpecError(Exception):
    """The spec uses a construct this generator does not translate; fail loudly instead of guessing."""


def snake(name: str) -> str:
    """Return the snake_case form of a camelCase wire name (``maxInvoiceSizeInMB`` -> ``max_invoice_size_in_mb``)."""
    out = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name)
    out = re.sub(r"(?<=[A-Z])([A-Z][a-z])", r"_\1", out).lower()
    if keyword.iskeyword(out):
        out += "_"
    return out


def camel(name: str) -> str:
    """Return the camelCase form the converter derives from a snake_case attribute name."""
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def member_name(value: str) -> str:
    """Return the UPPER_SNAKE member name of an enum value."""
    name = snake(value).rstrip("_").upper()
    if not name.isidentifier():
        raise SpecError(f"enum value {value!r} has no identifier form")
    return name


def ref_name(ref: str) -> str:
    """Return the schema name of a local ``$ref``."""
    if not ref.startswith(REF_PREFIX):
        raise SpecError(f"unsupported $ref {ref!r}")
    return ref.removeprefix(REF_PREFIX)


def field_repr(owner: str, wire: str, prop: Schema) -> str | None:
    """Return the name of the redacting repr function of a property, or ``None`` to print it as is."""
    if (owner, wire) in SECRET_FIELDS:
        return "redact_secret"
    scalar = "$ref" not in prop and "allOf" not in prop and prop.get("type") not in {"object", "array", "boolean"}
    if prop.get("format") == "uri" or (scalar and URL_NAME.search(wire)):
        if prop.get("type") != "string":
            raise SpecError(f"{owner}.{wire}: a URL field that is not a string")
        return "_url_repr"
    if scalar and SECRET_LOOKING.search(wire) and wire not in NOT_SECRET:
        raise SpecError(f"{owner}.{wire}: looks like a credential; add it to SECRET_FIELDS or NOT_SECRET")
    return None


def docstring(text: str, indent: int) -> list[str]:
    """Return the lines of a triple-quoted docstring holding ``text``, wrapped, markdown tables kept intact."""
    pad = " " * indent
    body: list[str] = []
    width = max(40, DOC_WIDTH - indent)
    for raw in text.replace("\r\n", "\n").strip().split("\n"):
        line = raw.rstrip()
        if not line.strip():
            if body and body[-1]:
                body.append("")
        elif line.lstrip().startswith("|"):
            # Tables are value/meaning lists; wrapping would break the columns.
            if body and body[-1] and not body[-1].startswith("|"):
                body.append("")
            body.append(line.strip())
        else:
            body.extend(textwrap.wrap(line.strip(), width=width, break_long_words=False, break_on_hyphens=False))
    while body and not body[-1]:
        body.pop()
    body = [b.replace("\\", "\\\\").replace('"""', r"\"\"\"") for b in body]
    if len(body) == 1 and len(body[0]) + indent + 6 <= DOC_WIDTH + 8:
        return [f'{pad}"""{body[0]}"""']
    lines = [f'{pad}"""{body[0]}']
    lines.extend(f"{pad}{b}" if b else "" for b in body[1:])
    lines.append(f'{pad}"""')
    return lines


class ModelWriter:
    """Translates component schemas into Python source, one definition per schema."""

    def __init__(self, schemas: dict[str, Schema], usage: dict[str, list[str]] | None = None) -> None:
        self.schemas = schemas
        self.usage = usage or {}
        self.inline: dict[str, Schema] = {}
        self.uses_any = False
        self.meta_used: set[str] = set()
        self.redactors: set[str] = set()

    def kind(self, name: str) -> str:
        """Return ``object``, ``enum`` or ``scalar`` for a component schema."""
        schema = self.schemas.get(name) or self.inline[name]
        if "enum" in schema:
            if schema.get("type") != "string":
                raise SpecError(f"{name}: only string enums are supported")
            return "enum"
        if schema.get("type") == "object":
            return "object"
        if schema.get("type") in {"string", "integer", "number", "boolean"}:
            return "scalar"
        raise SpecError(f"{name}: unsupported schema type {schema.get('type')!r}")

    def annotation(self, schema: Schema, owner: str, prop: str) -> str:  # noqa: PLR0911 (one return per JSON type)
        """Return the annotation (without ``| None``) of a property or item schema."""
        for unsupported in ("oneOf", "anyOf", "not", "discriminator"):
            if unsupported in schema:
                raise SpecError(f"{owner}.{prop}: {unsupported} is not handled")
        if "allOf" in schema:
            parts = schema["allOf"]
            if len(parts) != 1 or set(parts[0]) != {"$ref"}:
                raise SpecError(f"{owner}.{prop}: only single-$ref allOf wrappers are handled")
            return self.annotation(parts[0], owner, prop)
        if "$ref" in schema:
            target = ref_name(schema["$ref"])
            if target not in self.schemas:
                raise SpecError(f"{owner}.{prop}: dangling $ref {target}")
            return f"{target} | str" if self.kind(target) == "enum" else target
        kind = schema.get("type")
        fmt = schema.get("format")
        if kind == "string":
            if "enum" in schema:
                raise SpecError(f"{owner}.{prop}: inline enums are not handled")
            return {"date-time": "datetime.datetime", "date": "datetime.date", "byte": "bytes"}.get(str(fmt), "str")
        if kind == "integer":
            return "int"
        if kind == "number":
            return "decimal.Decimal"
        if kind == "boolean":
            return "bool"
        if kind == "array":
            item = self.annotation(schema["items"], owner, prop)
            if schema["items"].get("nullable"):
                item += " | None"
            return f"tuple[{item}, ...]"
        if kind == "object":
            if "properties" in schema:
                name = owner + prop[:1].upper() + prop[1:]
                if name in self.schemas:
                    raise SpecError(f"{owner}.{prop}: inline class name {name} collides with a schema")
                self.inline[name] = schema
                return name
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                if set(extra) <= {"nullable"}:
                    self.uses_any = True
                    return "dict[str, Any]"
                value = self.annotation(extra, owner, prop)
                if extra.get("nullable"):
                    value += " | None"
                return f"dict[str, {value}]"
        raise SpecError(f"{owner}.{prop}: unsupported property schema {schema!r}")

    def scalar(self, name: str, schema: Schema) -> list[str]:
        """Return the source of a scalar alias."""
        target = self.annotation({k: v for k, v in schema.items() if k != "example"}, name, "")
        doc = schema.get("description") or f"The ``{name}`` scalar of the spec."
        lines = [f"{name}: TypeAlias = {target}"]
        lines.extend(docstring(doc, 0))
        return lines

    def enum(self, name: str, schema: Schema) -> list[str]:
        """Return the source of a ``StrEnum``; member docs come from the value table in the description."""
        description = schema.get("description") or f"The ``{name}`` enumeration of the spec."
        meanings: dict[str, str] = {}
        intro: list[str] = []
        for line in description.split("\n"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.strip().startswith("|") and len(cells) >= 2 and cells[0] in schema["enum"]:  # noqa: PLR2004
                meanings[cells[0]] = " | ".join(c for c in cells[1:] if c)
            elif not line.strip().startswith("|"):
                intro.append(line)
        lines = [f"class {name}(enum.StrEnum):"]
        lines.extend(docstring("\n".join(intro) or f"The ``{name}`` enumeration of the spec.", 4))
        seen: set[str] = set()
        for value in schema["enum"]:
            member = member_name(value)
            if member in seen:
                raise SpecError(f"{name}: two values map to member {member}")
            seen.add(member)
            lines.append("")
            lines.append(f"    {member} = {value!r}")
            if value in meanings:
                lines.extend(docstring(meanings[value], 4))
        return lines

    def model(self, name: str, schema: Schema) -> list[str]:
        """Return the source of one frozen attrs class."""
        required = set(schema.get("required", ()))
        doc = schema.get("description") or f"The ``{name}`` object of the spec."
        if self.usage.get(name):
            doc += "\n\n" + "\n".join(f"{use}." for use in self.usage[name])
        if schema.get("deprecated"):
            doc += "\n\nDeprecated in the spec."
        lines = ["@attrs.frozen(kw_only=True)", f"class {name}:"]
        lines.extend(docstring(doc, 4))
        props: dict[str, Schema] = schema.get("properties", {})
        if not props:
            raise SpecError(f"{name}: object without properties")
        for wire, prop in props.items():
            attr = snake(wire)
            annotation = self.annotation(prop, name, wire)
            nullable = bool(prop.get("nullable"))
            metadata = [f"WIRE_NAME: {wire!r}"] if camel(attr) != wire else []
            self.meta_used.update(["WIRE_NAME"] if metadata else [])
            # A deprecated field is scheduled for removal, so a response without it must still structure.
            if wire in required and not nullable and not prop.get("deprecated"):
                default = ""
            else:
                if wire in required and nullable:
                    # Required but nullable: KSeF expects the key, so unstructuring keeps an explicit null.
                    metadata.append("KEEP_NULL: True")
                    self.meta_used.add("KEEP_NULL")
                annotation += " | None"
                default = "None"
            redactor = field_repr(name, wire, prop)
            if metadata or redactor:
                arguments = [f"default={default}"] if default else []
                if redactor:
                    self.redactors.add(redactor)
                    arguments.append(f"repr={redactor}")
                if metadata:
                    arguments.append(f"metadata={{{', '.join(metadata)}}}")
                line = f"    {attr}: {annotation} = attrs.field({', '.join(arguments)})"
            elif default:
                line = f"    {attr}: {annotation} = {default}"
            else:
                line = f"    {attr}: {annotation}"
            lines.append("")
            lines.append(line)
            notes = [prop.get("description", "").strip()]
            if "default" in prop:
                notes.append(f"KSeF default when omitted: ``{json.dumps(prop['default'])}``.")
            if prop.get("deprecated"):
                notes.append("Deprecated in the spec: optional here even when the spec lists it as required.")
            if prop.get("readOnly"):
                notes.append("Read-only: set by KSeF.")
            text = "\n\n".join(n for n in notes if n) or f"Wire name ``{wire}``."
            lines.extend(docstring(text, 4))
        return lines

    def render(self) -> str:
        """Return the whole ``_generated.py`` source (unformatted)."""
        blocks: dict[str, list[str]] = {}
        for name in sorted(self.schemas):
            schema = self.schemas[name]
            kind = self.kind(name)
            if kind == "enum":
                blocks[name] = self.enum(name, schema)
            elif kind == "scalar":
                blocks[name] = self.scalar(name, schema)
            else:
                blocks[name] = self.model(name, schema)
        # Inline objects are discovered while rendering their owners.
        while set(self.inline) - set(blocks):
            for name in sorted(set(self.inline) - set(blocks)):
                blocks[name] = self.model(name, self.inline[name])
        names = sorted(blocks)
        meta_import = []
        if self.meta_used:
            meta_import = [f"from ksef_async.models._meta import {', '.join(sorted(self.meta_used))}", ""]
        redact_import = []
        helpers = ""
        if self.redactors:
            redact_import = ["from ksef_async.core.redact import redact_secret, redact_url", ""]
            helpers = URL_REPR_HELPER
        head = [
            '"""Attrs models of every component schema in ``schemas/openapi.json``.',
            "",
            "GENERATED by ``tools/generate_models.py`` from the bundled spec: do not edit by hand, regenerate.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "import datetime",
            "import decimal",
            "import enum",
            "from typing import Any, TypeAlias" if self.uses_any else "from typing import TypeAlias",
            "",
            "import attrs",
            "",
            *redact_import,
            *meta_import,
            "__all__ = [",
            *[f"    {n!r}," for n in names],
            "]",
        ]
        out = "\n".join(head) + helpers + "\n"
        for name in names:
            out += "\n\n" + "\n".join(blocks[name]) + "\n"
        return out

    def render_init(self) -> str:
        """Return ``models/__init__.py``: every model and the converter helpers, explicitly re-exported."""
        models = sorted(set(self.schemas) | set(self.inline))
        lines = [
            '"""The KSeF API models generated from the bundled spec, and the converter that maps them to JSON.',
            "",
            "The package body is GENERATED by ``tools/generate_models.py``; edit the generator, not this file.",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "from ksef_async.models._generated import (",
            *[f"    {n}," for n in models],
            ")",
            "from ksef_async.models.converter import (",
            *[f"    {n}," for n in CONVERTER_API],
            ")",
            "",
            "__all__ = [",
            *[f'    "{n}",' for n in sorted([*models, *CONVERTER_API])],
            "]",
        ]
        return "\n".join(lines) + "\n"


def body_usage(spec: Schema) -> dict[str, list[str]]:
    """Return, per schema, the operations whose JSON request or success body it is.

    Error bodies (4xx/5xx) are left out: every operation shares them, so listing them says nothing.
    """
    usage: dict[str, list[str]] = {}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            bodies = [("Request body", op["requestBody"])] if "requestBody" in op else []
            bodies += [(f"Response {code}", body) for code, body in op["responses"].items() if code.startswith("2")]
            for label, body in bodies:
                for media, content in body.get("content", {}).items():
                    if not media.endswith("json"):
                        continue
                    name, is_list = json_schema_name({"content": {"application/json": content}})
                    if name is not None:
                        use = f"{label} of ``{where}``" + (" (an array of it)" if is_list else "")
                        if use not in usage.setdefault(name, []):
                            usage[name].append(use)
    return usage


def group_from_429(op: Schema, where: str) -> str:
    """Return the limit-group name written in the last column of the 429 description's table."""
    text = op["responses"]["429"]["description"]
    for line in text.split("\n"):
        if "Limity liczby" in line:
            group = line.strip().strip("|").split("|")[-1].strip()
            return PUBLIC_GROUP if group in {"-", ""} else group
    raise SpecError(f"{where}: 429 description has no limits row")


def json_schema_name(responses_or_body: Schema) -> tuple[str | None, bool]:
    """Return the component name of an ``application/json`` body (if any) and whether it is an array of it."""
    media = responses_or_body.get("content", {}).get("application/json")
    if not media:
        return None, False
    schema = media["schema"]
    if schema.get("type") == "array":
        return json_schema_name({"content": {"application/json": {"schema": schema["items"]}}})[0], True
    # Request bodies wrap the ref as {"required": [...], "allOf": [{"$ref": ...}]}.
    if "allOf" in schema and len(schema["allOf"]) == 1:
        schema = schema["allOf"][0]
    if "$ref" not in schema:
        raise SpecError(f"JSON body schema without a component $ref: {schema!r}")
    return ref_name(schema["$ref"]), False


def operation_id(method: str, path: str, taken: set[str]) -> str:
    """Derive a snake_case id (the spec has no ``operationId``): method + static segments (+ trailing param)."""
    segments = path.strip("/").split("/")
    words = [method] + [s.replace("-", "_") for s in segments if not s.startswith("{")]
    if segments[-1].startswith("{"):
        words.append("by_" + snake(segments[-1].strip("{}")))
    op_id = "_".join(words)
    if op_id in taken:
        raise SpecError(f"{method.upper()} {path}: derived id {op_id} is not unique")
    taken.add(op_id)
    return op_id


def render_table(spec: Schema) -> str:
    """Return the ``_operations_table.py`` source (unformatted)."""
    rows: list[str] = []
    groups: dict[str, tuple[int | None, int | None, int | None]] = {}
    taken: set[str] = set()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                raise SpecError(f"{path}: unsupported path item key {method!r}")
            where = f"{method.upper()} {path}"
            limits = op["x-rate-limits"]
            triple = (limits.get("perSecond"), limits.get("perMinute"), limits.get("perHour"))
            group = group_from_429(op, where)
            if groups.setdefault(group, triple) != triple:
                raise SpecError(f"{where}: group {group} has limits {triple}, elsewhere {groups[group]}")
            tokens: tuple[str, ...] = ()
            if op.get("security"):
                if op["security"] != [{"Bearer": []}]:
                    raise SpecError(f"{where}: unsupported security {op['security']!r}")
                note = TOKEN_NOTE.search(op.get("description", ""))
                names = re.findall(r"`(\w+)`", note.group(1)) if note else ["AccessToken"]
                unknown = set(names) - set(TOKEN_KINDS)
                if unknown or not names:
                    raise SpecError(f"{where}: unknown token kinds {sorted(unknown)} in {note and note.group(0)!r}")
                tokens = tuple(TOKEN_KINDS[n] for n in names)
            success = sorted(code for code in op["responses"] if code.startswith("2"))
            if len(success) != 1:
                raise SpecError(f"{where}: expected one success status, got {success}")
            response = json_schema_name(op["responses"][success[0]])
            row = {
                "operation_id": operation_id(method, path, taken),
                "method": method.upper(),
                "path": path,
                "summary": op["summary"].strip(),
                "tag": op["tags"][0],
                "required_permissions": tuple(op.get("x-required-permissions", ())),
                "rate_group": group,
                "per_second": triple[0],
                "per_minute": triple[1],
                "per_hour": triple[2],
                "tokens": tokens,
                "success_status": int(success[0]),
                "request_schema": json_schema_name(op.get("requestBody", {}))[0],
                "response_schema": response[0],
                "response_is_list": response[1],
            }
            rows.append("    OperationRow(" + ", ".join(f"{k}={v!r}" for k, v in row.items()) + "),")
    head = [
        '"""The operation table data: one row per (method, path) of ``schemas/openapi.json``.',
        "",
        "GENERATED by ``tools/generate_models.py``: do not edit by hand, regenerate. Read it through",
        "``ksef_async.operations``.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final, NamedTuple",
        "",
        '__all__ = ["ROWS", "OperationRow"]',
        "",
        "",
        "class OperationRow(NamedTuple):",
        '    """One operation as the spec states it."""',
        "",
        "    operation_id: str",
        "    method: str",
        "    path: str",
        "    summary: str",
        "    tag: str",
        "    required_permissions: tuple[str, ...]",
        "    rate_group: str",
        "    per_second: int | None",
        "    per_minute: int | None",
        "    per_hour: int | None",
        "    tokens: tuple[str, ...]",
        "    success_status: int",
        "    request_schema: str | None",
        "    response_schema: str | None",
        "    response_is_list: bool",
        "",
        "",
        "ROWS: Final[tuple[OperationRow, ...]] = (",
        *rows,
        ")",
    ]
    return "\n".join(head) + "\n"


def _ruff_command() -> list[str]:
    """Return how to run ruff: the one installed with this interpreter, else the one on ``PATH``."""
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    if found is None:
        raise SystemExit("generate_models: ruff is needed to format the output (pip install -e '.[dev]')")
    return [found]


def ruff_format(source: str, name: str) -> str:
    """Return ``source`` with imports sorted and formatted by ruff with the project's settings."""
    config = ["--config", str(ROOT / "pyproject.toml")]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(source, encoding="utf-8")
        ruff = _ruff_command()
        subprocess.run([*ruff, "check", "--quiet", "--select", "I", "--fix", *config, str(path)], check=True)
        subprocess.run([*ruff, "format", "--quiet", *config, str(path)], check=True)
        return path.read_text(encoding="utf-8")


def generate(spec_path: Path = SPEC) -> dict[Path, str]:
    """Return the formatted source of every generated module, keyed by its destination."""
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    writer = ModelWriter(spec["components"]["schemas"], body_usage(spec))
    models = writer.render()
    return {
        MODELS_OUT: ruff_format(models, "_generated.py"),
        INIT_OUT: ruff_format(writer.render_init(), "__init__.py"),
        TABLE_OUT: ruff_format(render_table(spec), "_operations_table.py"),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the generated modules, or with ``--check`` report whether they are stale."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the checked-in output would change")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    for path in stale:
        verb = "stale" if args.check else "wrote"
        print(f"{verb}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
