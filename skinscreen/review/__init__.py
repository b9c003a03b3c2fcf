"""The reviewers' workspace: an HTTP API and a web page over the scored cases (FastAPI, no build step)."""

from __future__ import annotations

from skinscreen.review.app import create_app

__all__ = ["create_app"]
