"""One command-line convention for the pack's trainers, so that their flags cannot drift from their configs.

- Every field of a trainer's config dataclass is a flag: `field_name` -> `--field-name`, typed from its
  annotation (int, float, str and their `| None` forms; bool -> `--flag` / `--no-flag`), with the field's
  default, and help, choices and argument group from the field's metadata (write fields with `option(...)`).
  A field without a default is a required flag.
- `TrainerCli.main(argv)` parses, builds the config, trains, prints the result path as the last line and
  returns 0. A user error (a PaperNodesError, or a missing file) prints one line `error: ...` on stderr and
  returns 2: the message says what to fix, a traceback would bury it. A bad flag gives one line and exit code
  2 as well (argparse's usage block is replaced by a pointer to --help).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from .errors import PaperNodesError


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices: Sequence[str] | None = None,
    group: str | None = None,
) -> Any:
    """A config dataclass field with its command-line help (and choices, argument group)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "group": group})


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit code 2), not a usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Shows defaults of optional flags (not 'default: None', not for required ones)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "%(default)" not in text
            and not action.required
            and action.default not in (None, argparse.SUPPRESS)
        ):
            text += " (default: %(default)s)"
        return text


def _flag_type(annotation: Any) -> type:
    """int / float / str / bool from a field annotation, unwrapping `X | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            annotation = args[0]
    if annotation in (int, float, str, bool):
        return annotation
    raise TypeError(f"no command-line type for annotation {annotation!r}")


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """One flag per field of the dataclass `config_cls` (module docstring)."""
    hints = typing.get_type_hints(config_cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        target = parser
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        kind = _flag_type(hints[f.name])
        kw: dict[str, Any] = {"dest": f.name, "help": (meta.get("help") or "").replace("%", "%%")}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default"] = f.default_factory()
        else:
            kw["required"] = True
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw["type"] = kind
            if meta.get("choices"):
                kw["choices"] = list(meta["choices"])
        target.add_argument("--" + f.name.replace("_", "-"), **kw)


def build_parser(config_cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    add_config_arguments(parser, config_cls)
    return parser


def config_from_args(config_cls: type, args: argparse.Namespace) -> Any:
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


def add_stages(p: argparse.ArgumentParser, stages: Sequence[str]) -> None:
    """`--stages a,b` of a reproduce command: a comma-separated subset of `stages` (default: all)."""
    p.add_argument(
        "--stages", default=",".join(stages), help="comma-separated subset of " + ", ".join(stages)
    )


def chosen_stages(p: argparse.ArgumentParser, text: str, stages: Sequence[str]) -> list[str]:
    """The `--stages` subset in the order given; an unknown name exits through the parser's error."""
    chosen = [s.strip() for s in text.split(",") if s.strip()]
    if unknown := [s for s in chosen if s not in stages]:
        p.error(f"--stages: unknown {unknown}; choose from {', '.join(stages)}")
    return chosen


def report_user_errors(fn: Callable[[], Any]) -> int:
    """Run `fn`: 0 when it returns; 2 and one line on stderr for a user error (PaperNodesError or a missing
    file). Other exceptions (bugs) propagate with their traceback."""
    try:
        fn()
    except (PaperNodesError, FileNotFoundError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return 0


class TrainerCli:
    """A trainer's command line: `python -m models.<method>.train --flag value ...`."""

    def __init__(
        self,
        config_cls: type,
        train: Callable[[Any], Any],
        prog: str,
        description: str,
        result_line: Callable[[Any], str] = str,
    ):
        self.config_cls, self.train, self.prog, self.description = config_cls, train, prog, description
        self.result_line = result_line  # what is printed last: the exported folder

    def parser(self) -> argparse.ArgumentParser:
        return build_parser(self.config_cls, self.prog, self.description)

    def config(self, args: argparse.Namespace) -> Any:
        return config_from_args(self.config_cls, args)

    def main(self, argv: list[str] | None = None) -> int:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local files; never reach a hub
        args = self.parser().parse_args(argv)
        return report_user_errors(lambda: print(self.result_line(self.train(self.config(args)))))
