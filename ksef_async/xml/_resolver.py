"""Hardened lxml parsing: resolvers that refuse external resources, DOCTYPE refusal before parsing, parsers."""

from __future__ import annotations

from typing import Any

from lxml import etree

from ksef_async._schemas import schema_path

__all__ = [
    "BUNDLED_URLS",
    "BundledSchemaResolver",
    "DoctypeRefusedError",
    "ExternalResourceRefusedError",
    "RefuseAllResolver",
    "RemoteSchemaRefusedError",
    "doctype_in_prolog",
    "hardened_parser",
    "parse_untrusted",
    "schema_parser",
]

# FA(2), FA(3) and FA_RR(1) import the shared data types by this absolute URL; the file is bundled.
BUNDLED_URLS: dict[str, tuple[str, ...]] = {
    "http://crd.gov.pl/xml/schematy/dziedzinowe/mf/2022/01/05/eD/DefinicjeTypy/StrukturyDanych_v10-0E.xsd": (
        "xsd",
        "FA",
        "bazowe",
        "StrukturyDanych_v10-0E.xsd",
    ),
}
_REMOTE_PREFIXES = ("http:", "https:", "ftp:")


class RemoteSchemaRefusedError(OSError):
    """A schema asked for a remote document that is not bundled; nothing is ever fetched."""


class BundledSchemaResolver(etree.Resolver):
    """Resolve known remote schema URLs to bundled files; refuse any other remote URL."""

    # lxml calls resolve(url, public_id, context); lxml-stubs 0.5 omit the context argument and resolve_filename.
    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:  # type: ignore[override]  # noqa: ARG002
        """Return the bundled file for a known URL, raise for another remote URL, defer for local paths."""
        if system_url is None:
            return None
        parts = BUNDLED_URLS.get(system_url)
        if parts is not None:
            return self.resolve_filename(str(schema_path(*parts)), context)  # type: ignore[attr-defined]
        if system_url.lower().startswith(_REMOTE_PREFIXES):
            msg = f"refusing to fetch {system_url}: only bundled schemas are used"
            raise RemoteSchemaRefusedError(msg)
        return None  # a relative or file path: lxml's file loader reads it


def schema_parser() -> etree.XMLParser:
    """Return a new parser for XSD files: bundled resolver, no network, no entity expansion."""
    parser = etree.XMLParser(
        no_network=True, resolve_entities=False, load_dtd=False, dtd_validation=False, attribute_defaults=False
    )
    parser.resolvers.add(BundledSchemaResolver())
    return parser


class ExternalResourceRefusedError(OSError):
    """An untrusted document asked for an external resource (DTD, entity, XInclude); nothing is ever read."""


class RefuseAllResolver(etree.Resolver):
    """Refuse every external resolution: files, devices, FIFOs, relative paths and URLs alike."""

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:  # type: ignore[override]  # noqa: ARG002
        """Raise for any URL: a document from a file or a server may not make us open anything."""
        shown = system_url if system_url is not None else public_id
        msg = f"refusing to load the external resource {shown!r} named by an untrusted document"
        raise ExternalResourceRefusedError(msg)


def hardened_parser(*, collect_ids: bool = True, remove_blank_text: bool = False) -> etree.XMLParser:
    """Return a new parser for untrusted XML: no DTD, no entity expansion, no network, every resolution refused.

    libxml2 2.14 under lxml 6 loads external parameter entities despite ``load_dtd=False`` when
    ``collect_ids=False``; the resolver makes that (and any future such path) fail instead of reading a file.
    Callers refuse a DOCTYPE before parsing as well (`doctype_in_prolog`).

    Args:
        collect_ids: Passed to `lxml.etree.XMLParser` (``False`` is faster when ids are not needed).
        remove_blank_text: Passed to `lxml.etree.XMLParser`.
    """
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        attribute_defaults=False,
        huge_tree=False,
        collect_ids=collect_ids,
        remove_blank_text=remove_blank_text,
    )
    parser.resolvers.add(RefuseAllResolver())
    return parser


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def doctype_in_prolog(data: bytes) -> bool:
    """Return whether ``data`` declares a DOCTYPE, by a linear byte scan of the prolog (no parsing).

    The prolog is an optional BOM, then blanks, processing instructions (the XML declaration among them) and
    comments; a DOCTYPE can only appear there. UTF-16 documents (with a BOM or a leading NUL) are transcoded
    first. The scan stops at the first other byte, so its cost is the prolog's length.
    """
    if data.startswith(_UTF16_BOMS):
        data = data.decode("utf-16", "replace").encode("utf-8")
    elif data[:1] == b"\x00" or data[1:2] == b"\x00":
        data = data.decode("utf-16-be" if data[:1] == b"\x00" else "utf-16-le", "replace").encode("utf-8")
    pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    end = len(data)
    while pos < end:
        byte = data[pos : pos + 1]
        if byte in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
        elif data.startswith(b"<?", pos):
            close = data.find(b"?>", pos + 2)
            if close == -1:
                return False
            pos = close + 2
        elif data.startswith(b"<!--", pos):
            close = data.find(b"-->", pos + 4)
            if close == -1:
                return False
            pos = close + 3
        else:
            return data.startswith(b"<!DOCTYPE", pos)
    return False


class DoctypeRefusedError(ValueError):
    """An untrusted document declares a DOCTYPE; it is refused before any parsing."""


def parse_untrusted(data: bytes, parser: etree.XMLParser | None = None) -> etree._Element:
    """Parse untrusted bytes: refuse a DOCTYPE first, then parse with a `hardened_parser`.

    Args:
        data: The document's bytes.
        parser: A parser from `hardened_parser` (a new default one when omitted).

    Raises:
        DoctypeRefusedError: The prolog declares a DOCTYPE.
        lxml.etree.XMLSyntaxError: The bytes are not well-formed XML.
    """
    if doctype_in_prolog(data):
        msg = "a DOCTYPE declaration is not allowed"
        raise DoctypeRefusedError(msg)
    return etree.fromstring(data, parser if parser is not None else hardened_parser())
