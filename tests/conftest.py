"""Shared test setup: pytester for plugin behaviour, as a user would run pytest."""

pytest_plugins = ["pytester"]
