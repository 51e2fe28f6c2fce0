"""Typer options generated from a configuration dataclass: the dataclass is the one source of truth.

As TRL's ``TrlParser`` / transformers' ``HfArgumentParser`` do for argparse: every field becomes an
option ``--field-name`` (or the spelling a :class:`Flag` gives), typed like the field, with the
field's default, and with the first line of its attribute docstring as help text (read with ``ast``
from the class source, as LitGPT / jsonargparse do). After parsing, only the options the user
actually passed are handed back, so a command can layer them: dataclass defaults < config file < flags.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any, Generic, Literal, TypeVar

import typer

from medvlab.fielddocs import field_docs, help_line

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one field appears on the command line, where the default rule does not fit."""

    decls: tuple[str, ...] = ()
    """Option names, e.g. ``("--lr",)``, ``("--output", "-o")`` or ``("--qlora/--no-qlora",)``."""
    cli_type: Any = None
    """The type the command line reads (default: the field's type without ``None``)."""
    parse: Callable[[Any], Any] | None = None
    """Turns what the command line read into the field's value (e.g. a comma list into a list)."""


def _bare(annotation: Any) -> Any:
    """``X | None`` -> ``X``; a ``Literal`` of strings -> ``str`` (the dataclass checks the value)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"{annotation} has no single command-line type; give it a Flag(cli_type=...).")
        annotation = args[0]
    if typing.get_origin(annotation) is Literal:
        return type(typing.get_args(annotation)[0])
    return annotation


class DataclassOptions(Generic[T]):
    """The command-line options of the dataclass ``cls``: one per field, except those in ``skip``.

    ``flags`` gives the fields whose option is spelled, typed or parsed differently from the rule:
    ``--field-name`` reading the field's type, booleans as ``--x/--no-x`` (or only ``--x`` when
    ``negatable`` is False). ``skip`` names fields set only in Python or a config file.
    """

    def __init__(
        self,
        cls: type[T],
        flags: Mapping[str, Flag] | None = None,
        skip: Collection[str] = (),
        negatable: bool = True,
    ) -> None:
        self.cls = cls
        self.flags = dict(flags or {})
        every = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = (set(self.flags) | set(skip)) - set(every)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}.")
        self.fields = [f for name, f in every.items() if name not in skip and f.init]
        self.names = [f.name for f in self.fields]
        self.negatable = negatable
        self.docs = field_docs(cls)
        self.hints = typing.get_type_hints(cls)

    def decls(self, name: str) -> tuple[str, ...]:
        """The option names of field ``name``."""
        given = self.flags.get(name, Flag()).decls
        if given:
            return given
        flag = "--" + name.replace("_", "-")
        if self.cli_type(name) is bool and self.negatable:
            return (f"{flag}/--no-{name.replace('_', '-')}",)
        return (flag,)

    def cli_type(self, name: str) -> Any:
        """The type the command line reads for field ``name``."""
        return self.flags.get(name, Flag()).cli_type or _bare(self.hints[name])

    def help(self, name: str) -> str:
        return help_line(self.docs.get(name, ""))

    def parameters(self) -> list[inspect.Parameter]:
        """One keyword parameter per field, as Typer reads a command function's signature."""
        out = []
        for f in self.fields:
            flag = self.flags.get(f.name, Flag())
            cli_type = self.cli_type(f.name)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                option = typer.Option(..., *self.decls(f.name), help=self.help(f.name))
            else:
                # a field whose value is parsed from other text has no default the command line can show
                default = None if flag.parse else _default(f)
                option = typer.Option(default, *self.decls(f.name), help=self.help(f.name))
                cli_type = cli_type | None
            out.append(
                inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=cli_type)
            )
        return out

    def given(self, ctx: typer.Context, values: Mapping[str, Any]) -> dict[str, Any]:
        """The field values the user passed on the command line (parsed), without the defaults."""
        out = {}
        for name in self.names:
            source = ctx.get_parameter_source(name)
            if source is None or source.name in ("DEFAULT", "DEFAULT_MAP") or values[name] is None:
                continue
            parse = self.flags.get(name, Flag()).parse
            out[name] = parse(values[name]) if parse else values[name]
        return out

    def build(self, given: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> T:
        """The dataclass from its defaults, then ``base`` (e.g. a config file), then ``given``."""
        return self.cls(**{**(base or {}), **given})

    def command(self, func: Callable[..., None]) -> Callable[..., None]:
        """Add the generated options to a command function.

        ``func``'s first parameter receives :meth:`given` (a dict of field values the user passed); its
        other parameters stay options of their own and come first in ``--help``.
        """
        own = list(inspect.signature(func).parameters.values())[1:]
        hints = typing.get_type_hints(func)
        own = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        clash = {p.name for p in own} & set(self.names)
        if clash:
            raise TypeError(f"{func.__name__} has parameters named like fields: {', '.join(sorted(clash))}.")
        ctx_param = inspect.Parameter(
            "typer_context", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context
        )

        @functools.wraps(func)
        def command(typer_context: typer.Context, **kwargs: Any) -> None:
            flags = self.given(typer_context, kwargs)
            func(flags, **{k: v for k, v in kwargs.items() if k not in self.names})

        params = [
            ctx_param,
            *(p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own),
            *self.parameters(),
        ]
        command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
