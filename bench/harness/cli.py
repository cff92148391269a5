"""The command line: what every benchmark's options have in common."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from harness.database import DEFAULT_PG_URL

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

BENCH_DIR = Path(__file__).resolve().parent.parent

OptionsT = TypeVar("OptionsT", bound="DataclassInstance")


def new_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser that shows defaults, with ``--pg-url`` as its first option."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--pg-url", default=DEFAULT_PG_URL, help="Base URL; a fresh DB is made next"
    )
    return parser


def add_out_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--out``: where the results go, without suffix; ``default`` describes the default."""
    parser.add_argument(
        "--out", type=Path, default=None, help=f"Results path without suffix (default: {default})"
    )


def add_quick_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--quick``: a smoke run; ``what`` says what it shrinks to."""
    parser.add_argument("--quick", action="store_true", help=f"Smoke run: {what}")


def int_list(option: str) -> tuple[int, ...]:
    """The distinct integers of a comma-separated option such as ``"1,16,64"``, sorted."""
    return tuple(sorted({int(x) for x in option.split(",") if x.strip()}))


def require_at_least_one(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]
) -> None:
    """Exit with a usage error unless each of these options (by attribute name) is >= 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


def results_path(out: Path | None, stem: str) -> Path:
    """``--out`` if given, else ``bench/results/<stem>`` (the suffixes are added later)."""
    return out or BENCH_DIR / "results" / stem


def options_from(cls: type[OptionsT], args: argparse.Namespace, **values: Any) -> OptionsT:
    """The options dataclass ``cls`` from parsed arguments: each field from ``values`` if
    given there, else from the argument of the same name."""
    names = [f.name for f in fields(cls)]
    return cls(**{name: values[name] if name in values else getattr(args, name) for name in names})
