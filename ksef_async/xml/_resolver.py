"""An lxml resolver that maps the XSDs' remote imports to the bundled copies and refuses every other URL."""

from __future__ import annotations

from typing import Any

from lxml import etree

from ksef_async._schemas import schema_path

__all__ = ["BUNDLED_URLS", "BundledSchemaResolver", "RemoteSchemaRefusedError", "schema_parser"]

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
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(BundledSchemaResolver())
    return parser
