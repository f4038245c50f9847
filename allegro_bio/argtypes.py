"""argparse value types shared by the ``allegro-bio`` subcommands (no heavy imports)."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An integer ≥ 1, else an argparse error naming the value."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer ≥ 0, else an argparse error naming the value."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value
