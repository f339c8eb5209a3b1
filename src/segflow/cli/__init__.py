"""The ``segflow`` command: a thin layer over the library (which never imports it)."""

from segflow.cli.main import main

__all__ = ["main"]
