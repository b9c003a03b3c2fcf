"""`python -m skinscreen` runs the command line."""

from __future__ import annotations

from skinscreen.cli import main

main()
