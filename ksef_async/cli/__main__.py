"""Allows `python -m ksef_async.cli`."""

from ksef_async.cli import main

main()
