"""Imports every command module so that each registers itself on the application."""

from __future__ import annotations

from ksef_async.cli._app import app

__all__ = ["app"]
