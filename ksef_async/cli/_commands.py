"""Imports every command module so that each registers itself on the application."""

from __future__ import annotations

from ksef_async.cli import _global as _global_options  # noqa: F401 - --quiet, --verbose, --log-json
from ksef_async.cli import cert as _cert  # noqa: F401
from ksef_async.cli import collective as _collective  # noqa: F401
from ksef_async.cli import demo as _demo  # noqa: F401
from ksef_async.cli import get as _get  # noqa: F401
from ksef_async.cli import limits as _limits  # noqa: F401
from ksef_async.cli import make_invoices as _make_invoices  # noqa: F401
from ksef_async.cli import permissions as _permissions  # noqa: F401
from ksef_async.cli import prepare as _prepare  # noqa: F401
from ksef_async.cli import qr as _qr  # noqa: F401
from ksef_async.cli import query as _query  # noqa: F401
from ksef_async.cli import resume as _resume  # noqa: F401
from ksef_async.cli import send as _send  # noqa: F401
from ksef_async.cli import simulator as _simulator  # noqa: F401
from ksef_async.cli import status as _status  # noqa: F401
from ksef_async.cli import sync as _sync  # noqa: F401
from ksef_async.cli import token as _token  # noqa: F401
from ksef_async.cli import upo as _upo  # noqa: F401
from ksef_async.cli import validate as _validate  # noqa: F401
from ksef_async.cli._app import app
from ksef_async.cli._examples import add_examples

add_examples(app)

__all__ = ["app"]
