"""Every KSeF status and exception code the library acts on, as enums with the spec's meaning: one home per code.

KSeF reuses a number with different meanings in different tables: status 440 is "Sesja anulowana" for a session
(`SessionStatus.CANCELLED`) and "Duplikat faktury" for an invoice (`InvoiceStatus.DUPLICATE`); 415 and 420 differ
the same way. So each table of the spec is its own enum, and code compares with the member of the table the value
came from. The descriptions are quoted from ``schemas/openapi.json`` (the ``status`` descriptions of
``SessionStatusResponse``, ``SessionInvoiceStatusResponse``, ``AuthenticationOperationStatusResponse``,
``InvoiceExportStatusResponse``, ``PermissionsOperationStatusResponse`` and ``CertificateEnrollmentStatusResponse``,
and the ``ExceptionCode`` tables of the 400 responses). Each member carries the spec's ``description`` and, being an
`enum.IntEnum`, equals its number, so values straight from JSON compare and hash as before; unknown numbers stay
plain ints.

The tables live here, below `ksef_async.errors` (which names exception codes with them); the rest of the code
imports them from `ksef_async.core.codes`.
"""

from __future__ import annotations

import enum
from typing import Final, Self

__all__ = [
    "EXPORT_FAILURES",
    "INVOICE_PENDING",
    "SESSION_PENDING",
    "AuthenticationStatus",
    "CertificateEnrollmentStatus",
    "ExceptionCode",
    "ExportStatus",
    "InvoiceStatus",
    "PermissionOperationStatus",
    "SessionStatus",
    "is_final_failure",
]


class _Table(enum.IntEnum):
    """A spec table: members equal their code and carry the spec's ``description``."""

    description: str

    def __new__(cls, value: int, description: str = "") -> Self:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member


class SessionStatus(_Table):
    """``SessionStatusResponse.status.code``: a batch (``Sesja wsadowa``) or online (``Sesja interaktywna``) session."""

    OPEN = 100, "Sesja wsadowa rozpoczęta"
    PROCESSING = 150, "Trwa przetwarzanie"
    CLOSED = 170, "Sesja interaktywna zamknięta"
    PROCESSED = 200, "Sesja wsadowa przetworzona pomyślnie"
    PACKAGE_INVALID = 405, "Błąd weryfikacji poprawności dostarczonych elementów paczki"
    KEY_DECRYPTION_FAILED = 415, "Błąd odszyfrowania dostarczonego klucza"
    INVOICE_LIMIT_EXCEEDED = 420, "Przekroczony limit faktur w sesji"
    DECOMPRESSION_FAILED = 430, "Błąd dekompresji pierwotnego archiwum"
    PART_DECRYPTION_FAILED = 435, "Błąd odszyfrowania zaszyfrowanych części archiwum"
    CANCELLED = 440, "Sesja anulowana"
    NO_VALID_INVOICES = 445, "Błąd weryfikacji, brak poprawnych faktur"
    UNKNOWN_ERROR = 500, "Nieznany błąd ({statusCode})"


class InvoiceStatus(_Table):
    """``SessionInvoiceStatusResponse.status.code``: one invoice of a session."""

    ACCEPTED = 100, "Faktura przyjęta do dalszego przetwarzania"
    PROCESSING = 150, "Trwa przetwarzanie"
    SUCCESS = 200, "Sukces"
    CANCELLED_BY_SESSION_ERROR = 405, "Przetwarzanie anulowane z powodu błędu sesji"
    WRONG_PERMISSION_SCOPE = 410, "Nieprawidłowy zakres uprawnień"
    ATTACHMENT_NOT_ALLOWED = 415, "Brak możliwości wysyłania faktury z załącznikiem"
    FILE_VERIFICATION_FAILED = 430, "Błąd weryfikacji pliku faktury"
    DECRYPTION_FAILED = 435, "Błąd odszyfrowania pliku"
    DUPLICATE = 440, "Duplikat faktury"
    SEMANTIC_VALIDATION_FAILED = 450, "Błąd weryfikacji semantyki dokumentu faktury"
    UNKNOWN_ERROR = 500, "Nieznany błąd ({statusCode})"
    CANCELLED_BY_SYSTEM = 550, "Operacja została anulowana przez system"


class AuthenticationStatus(_Table):
    """``AuthenticationOperationStatusResponse.status.code``: a login (``GET /auth/{referenceNumber}``)."""

    IN_PROGRESS = 100, "Uwierzytelnianie w toku"
    SUCCESS = 200, "Uwierzytelnianie zakończone sukcesem"
    NO_PERMISSIONS = 415, "Uwierzytelnianie zakończone niepowodzeniem"
    REVOKED = 425, "Uwierzytelnienie unieważnione"
    BAD_TOKEN = 450, "Uwierzytelnianie zakończone niepowodzeniem z powodu błędnego tokenu"
    CERTIFICATE_ERROR = 460, "Uwierzytelnianie zakończone niepowodzeniem z powodu błędu certyfikatu"
    DECEASED_PERSON = 470, "Uwierzytelnianie zakończone niepowodzeniem"
    BLOCKED = 480, "Uwierzytelnienie zablokowane"
    UNKNOWN_ERROR = 500, "Nieznany błąd"
    CANCELLED_BY_SYSTEM = 550, "Operacja została anulowana przez system"


class ExportStatus(_Table):
    """``InvoiceExportStatusResponse.status.code``: an invoice export (``GET /invoices/exports/{referenceNumber}``)."""

    IN_PROGRESS = 100, "Eksport faktur w toku"
    DONE = 200, "Eksport faktur zakończony sukcesem"
    EXPIRED = 210, "Eksport faktur wygasł i nie jest już dostępny do pobrania"
    KEY_DECRYPTION_FAILED = 415, "Błąd odszyfrowania dostarczonego klucza"
    FROM_AFTER_HWM = 420, "Zakres filtrowania wykracza poza dostępny zakres danych"
    UNKNOWN_ERROR = 500, "Nieznany błąd ({statusCode})"
    CANCELLED_BY_SYSTEM = 550, "Operacja została anulowana przez system"


class PermissionOperationStatus(_Table):
    """``PermissionsOperationStatusResponse.status.code``: a grant or revoke operation."""

    ACCEPTED = 100, "Operacja przyjęta do realizacji"
    SUCCESS = 200, "Operacja zakończona sukcesem"
    FAILED = 400, "Operacja zakończona niepowodzeniem"
    IDENTIFIERS_MISMATCH = 410, "Podane identyfikatory są niezgodne lub pozostają w niewłaściwej relacji"
    CREDENTIALS_NOT_ALLOWED = 420, "Użyte poświadczenia nie mają uprawnień do wykonania tej operacji"
    CONTEXT_ROLE_MISMATCH = 430, "Kontekst identyfikatora nie odpowiada wymaganej roli lub uprawnieniom"
    RELATION_NOT_ALLOWED = 440, "Operacja niedozwolona dla wskazanych powiązań identyfikatorów"
    IDENTIFIER_NOT_ALLOWED = 450, "Operacja niedozwolona dla wskazanego identyfikatora lub jego typu"
    UNKNOWN_ERROR = 500, "Nieznany błąd"
    CANCELLED_BY_SYSTEM = 550, "Operacja została anulowana przez system"


class CertificateEnrollmentStatus(_Table):
    """``CertificateEnrollmentStatusResponse.status.code``: a certificate enrollment."""

    ACCEPTED = 100, "Wniosek przyjęty do realizacji"
    ISSUED = 200, "Wniosek obsłużony (certyfikat wygenerowany)"
    REJECTED = 400, "Wniosek odrzucony"
    UNKNOWN_ERROR = 500, "Nieznany błąd"
    CANCELLED_BY_SYSTEM = 550, "Operacja została anulowana przez system"


class ExceptionCode(_Table):
    """``ExceptionDetails.exceptionCode`` of 400 answers (the ``ExceptionCode`` tables of the spec's operations)."""

    UNREADABLE_CONTENT = 21001, "Nieczytelna treść."
    BAD_CHALLENGE = 21111, "Nieprawidłowe wyzwanie autoryzacyjne."
    BAD_CERTIFICATE = 21115, "Nieprawidłowy certyfikat."
    BAD_SUBJECT_FOR_CONTEXT = 21117, "Nieprawidłowy identyfikator podmiotu dla wskazanego typu kontekstu."
    SESSION_INVOICE_LIMIT = 21155, "Przekroczono dozwoloną liczbę faktur w sesji."
    BAD_PART_SIZE = 21157, "Nieprawidłowy rozmiar części pakietu."
    TOO_MANY_PARTS = 21161, "Przekroczono dozwoloną liczbę części pakietu."
    INVOICE_NOT_FOUND = 21164, "Faktura o podanym identyfikatorze nie istnieje."
    INVOICE_NOT_AVAILABLE_YET = 21165, "Faktura o podanym numerze KSeF nie jest jeszcze dostępna."
    CORRECTION_UNAVAILABLE = 21166, "Korekta techniczna niedostępna."
    CORRECTION_NOT_ALLOWED = 21167, "Status faktury nie pozwala na korektę techniczną."
    NO_SUCH_SESSION = 21173, "Brak sesji o wskazanym numerze referencyjnym."
    NO_SUCH_QUERY_RESULT = 21175, "Wynik zapytania o podanym identyfikatorze nie istnieje."
    UPO_NOT_FOUND = 21178, "Nie znaleziono UPO dla podanych kryteriów."
    SESSION_STATUS_FORBIDS = 21180, "Status sesji nie pozwala na wykonanie operacji."
    BAD_EXPORT_REQUEST = 21181, "Nieprawidłowe żądanie eksportu faktur."
    EXPORTS_IN_PROGRESS = 21182, "Osiągnięto limit trwających eksportów."
    FROM_AFTER_HWM = 21183, "Zakres filtrowania wykracza poza dostępny zakres danych."
    SESSION_TEMPORARILY_UNAVAILABLE = 21184, "Sesja tymczasowo niedostępna."
    EMPTY_PACKAGE = 21205, "Pakiet nie może być pusty."
    UPLOAD_WINDOW_EXCEEDED = 21208, "Czas oczekiwania na requesty upload lub finish został przekroczony."
    BAD_CHARACTER_ENCODING = 21217, "Nieprawidłowe kodowanie znaków."
    NO_AUTHORIZATION = 21301, "Brak autoryzacji."
    NO_AUTHENTICATION = 21304, "Brak uwierzytelnienia."
    DECEASED_PERSON = 21308, "Próba wykorzystania metod autoryzacyjnych osoby zmarłej."
    XSD_MISMATCH = 21401, "Dokument nie jest zgodny ze schemą (xsd)."
    BAD_FILE_SIZE = 21402, "Nieprawidłowy rozmiar pliku."
    BAD_FILE_HASH = 21403, "Nieprawidłowy skrót pliku."
    VALIDATION_ERROR = 21405, "Błąd walidacji danych wejściowych."
    SIGNATURE_AUTH_CONFLICT = 21406, "Konflikt podpisu i typu uwierzytelnienia."
    BAD_CONTINUATION_TOKEN = 21418, "Przekazany token kontynuacji ma nieprawidłowy format."
    UNKNOWN_PUBLIC_KEY = 21470, "Przesłany identyfikator klucza jest nieznany lub wskazuje na wycofany klucz."
    CSR_DATA_UNAVAILABLE = 25001, "Brak możliwości pobrania danych do CSR dla wykorzystanego sposobu uwierzytelnienia."
    ENROLLMENT_NOT_ALLOWED = (
        25002,
        "Brak możliwości złożenia wniosku certyfikacyjnego dla wykorzystanego sposobu uwierzytelnienia.",
    )
    CSR_DATA_MISMATCH = 25003, "Dane w CSR nie zgadzają się z danymi w użytym wektorze uwierzytelniającym."
    BAD_CSR = 25004, "Niepoprawny format CSR lub niepoprawny podpis CSR."
    NO_SUCH_ENROLLMENT = 25005, "Wniosek certyfikacyjny o podanym numerze referencyjnym nie istnieje."
    ENROLLMENT_LIMIT = 25006, "Osiągnięto limit możliwych do złożenia wniosków certyfikacyjnych."
    CERTIFICATE_LIMIT = 25007, "Osiągnięto limit dopuszczalnej liczby posiadanych certyfikatów."
    NO_SUCH_CERTIFICATE = 25008, "Certyfikat o podanym numerze seryjnym nie istnieje."
    CERTIFICATE_NOT_REVOCABLE = (
        25009,
        "Nie można odwołać wskazanego certyfikatu, ponieważ jest już odwołany, zablokowany lub nieważny.",
    )
    BAD_KEY = 25010, "Nieprawidłowy typ lub długość klucza."
    BAD_CSR_SIGNATURE_ALGORITHM = 25011, "Nieprawidłowy algorytm podpisu CSR."
    TOKEN_PERMISSIONS_NOT_HELD = 26001, "Nie można nadać tokenowi uprawnień których nie posiadasz."
    TOKEN_CONTEXT_NOT_ALLOWED = 26002, "Nie można wygenerować tokena dla obecnego typu kontekstu."
    ALREADY_EXISTS = 30001, "Podmiot lub uprawnienie już istnieje."
    COLLECTIVE_INVOICE_NOT_FOUND = 71001, "Faktura o podanym identyfikatorze nie istnieje."
    COLLECTIVE_IDENTIFIER_CAP = 71002, "Faktura jest już przypisana do maksymalnej liczby Identyfikatorów Zbiorczych."
    DIFFERENT_SELLERS = 71004, "Faktury mają różnych sprzedawców."
    DUPLICATE_KSEF_NUMBER = 71005, "Powtórzony numer KSeF w żądaniu."


SESSION_PENDING: Final = frozenset({SessionStatus.OPEN, SessionStatus.PROCESSING, SessionStatus.CLOSED})
"""Session codes that are not final yet: keep polling."""
INVOICE_PENDING: Final = frozenset({InvoiceStatus.ACCEPTED, InvoiceStatus.PROCESSING})
"""Invoice codes that are not final yet: keep polling."""
EXPORT_FAILURES: Final = frozenset(
    {
        ExportStatus.EXPIRED,
        ExportStatus.KEY_DECRYPTION_FAILED,
        ExportStatus.FROM_AFTER_HWM,
        ExportStatus.UNKNOWN_ERROR,
        ExportStatus.CANCELLED_BY_SYSTEM,
    }
)
"""Export codes that end the export without a package."""

_FIRST_FAILURE: Final = 300


def is_final_failure(code: int) -> bool:
    """Whether a status code of any of these tables is a failure: every table puts failures at 300 and above."""
    return code >= _FIRST_FAILURE
