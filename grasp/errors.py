"""The package's own exceptions, in a module that imports nothing of the package, so the config,
the schema and every stage can raise them without importing each other."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config value; the message names the key and what is allowed."""
