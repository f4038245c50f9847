"""argparse value types and helpers shared by the ``allegro-bio`` subcommands (no heavy imports)."""

from __future__ import annotations

import argparse
from typing import Any, Callable


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


def add_subcommand(subparsers: Any, name: str, help: str, description: str,
                   add_arguments: Callable[[argparse.ArgumentParser], None],
                   main: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with its options to an argparse ``subparsers`` object; dispatch
    with ``args.func(args)``. Returns the new parser."""
    parser = subparsers.add_parser(name, help=help, description=description)
    add_arguments(parser)
    parser.set_defaults(func=main)
    return parser
