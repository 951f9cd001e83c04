"""`dispatchbot train`: a LoRA adapter from an exported dataset."""

from __future__ import annotations

import typer


def train(ctx: typer.Context) -> None:
    """Train a LoRA adapter on an exported dataset."""
    raise NotImplementedError
