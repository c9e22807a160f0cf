"""``client.online``: open an online session, send encrypted invoices into it, close it."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

import attrs

from ksef_async.core.crypto import KEY_USAGE_SYMMETRIC, MfPublicKey, SessionKey, b64decode, encrypt_cbc
from ksef_async.models import (
    FormCode,
    OpenOnlineSessionRequest,
    OpenOnlineSessionResponse,
    SendInvoiceRequest,
    SendInvoiceResponse,
)
from ksef_async.models.converter import unstructure
from ksef_async.resources._base import Resource
from ksef_async.resources._features import check_features, feature_headers
from ksef_async.resources._keys import encryption_info, with_key_rotation
from ksef_async.resources.security import SecurityResource
from ksef_async.transport import ApiTransport, StorageTransport

__all__ = ["OnlineResource", "OnlineSession"]


@attrs.frozen
class OnlineSession:
    """An open online session: its reference number, expiry and the AES key its invoices are encrypted with."""

    reference_number: str
    valid_until: dt.datetime
    key: SessionKey = attrs.field(repr=False)


class OnlineResource(Resource):
    """``POST /sessions/online``, ``.../invoices`` and ``.../close``."""

    def __init__(
        self,
        api: ApiTransport,
        storage: StorageTransport,
        security: SecurityResource,
        *,
        features: Iterable[str] = (),
    ) -> None:
        super().__init__(api, storage)
        self._security = security
        self._features = check_features(features)

    async def open(
        self, form_code: FormCode, *, key: SessionKey | None = None, features: Iterable[str] | None = None
    ) -> OnlineSession:
        """Open an online session for invoices of ``form_code``; a fresh AES key is generated unless given.

        The key is wrapped under the MF ``SymmetricKeyEncryption`` key; if KSeF answers 21470 (key rotated), the
        keys are fetched again and the open is retried once. ``features`` (e.g. ``subject-identifier-validation``)
        are sent as ``X-KSeF-Feature`` together with the client's ``ClientConfig.features``.

        Raises:
            ConfigurationError: A feature name is malformed (nothing was sent).
        """
        headers = feature_headers(self._features, features)
        session_key = key or SessionKey.generate()

        async def attempt(public_key: MfPublicKey) -> OpenOnlineSessionResponse:
            request = OpenOnlineSessionRequest(form_code=form_code, encryption=encryption_info(session_key, public_key))
            response = await self._send("post_sessions_online", json_body=unstructure(request), headers=headers)
            return self._structure("post_sessions_online", response, OpenOnlineSessionResponse)

        opened = await with_key_rotation(self._security, KEY_USAGE_SYMMETRIC, attempt, what="post_sessions_online")
        return OnlineSession(opened.reference_number, opened.valid_until, session_key)

    async def send(
        self,
        session: OnlineSession,
        invoice: bytes,
        *,
        offline_mode: bool = False,
        hash_of_corrected_invoice: str | None = None,
    ) -> SendInvoiceResponse:
        """Encrypt ``invoice`` (the exact XML bytes) with the session key and send it; returns its reference number.

        The result is only an acknowledgement: KSeF validates the invoice afterwards (see ``client.invoices``).
        Never retried blindly: on an ambiguous failure `AmbiguousRequestError` is raised and the session's
        invoice list tells whether the invoice arrived (match by ``invoiceHash``).
        """
        encrypted = encrypt_cbc(session.key, invoice)
        request = SendInvoiceRequest(
            invoice_hash=hashlib.sha256(invoice).digest(),
            invoice_size=len(invoice),
            encrypted_invoice_hash=hashlib.sha256(encrypted).digest(),
            encrypted_invoice_size=len(encrypted),
            encrypted_invoice_content=encrypted,
            offline_mode=offline_mode or None,
            hash_of_corrected_invoice=(
                None if hash_of_corrected_invoice is None else b64decode(hash_of_corrected_invoice, field="hash")
            ),
        )
        response = await self._send(
            "post_sessions_online_invoices",
            path_params={"referenceNumber": session.reference_number},
            json_body=unstructure(request),
            reference_number=session.reference_number,
        )
        return self._structure("post_sessions_online_invoices", response, SendInvoiceResponse)

    async def close(self, reference_number: str) -> None:
        """``POST /sessions/online/{referenceNumber}/close``: close the session; KSeF then prepares the UPO."""
        await self._send(
            "post_sessions_online_close",
            path_params={"referenceNumber": reference_number},
            reference_number=reference_number,
        )
