"""The `skinscreen` command: one click group of thin commands over the package."""

from __future__ import annotations

from skinscreen.cli import bench_commands, model_commands, pipeline_commands, query_commands, review_commands
from skinscreen.cli.base import cli, main

for _module in (pipeline_commands, query_commands, model_commands, bench_commands, review_commands):
    for _command in _module.COMMANDS:
        cli.add_command(_command)

__all__ = ["cli", "main"]
