"""segflow: keeps marketing audiences up to date by itself."""

__version__ = "0.1.0"
