"""The `skinscreen` command: one click group of thin commands, each module loaded when its command runs."""

from __future__ import annotations

from skinscreen.cli.base import cli, main

__all__ = ["cli", "main"]
