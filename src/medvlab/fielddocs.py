"""Attribute docstrings of the config dataclasses: the one source of every option's help text, read by the
command line (generated flags) and by the web page (the Train tab's form)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import textwrap


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string right after ``name: type = ...``) of ``cls`` and its bases.

    A subclass's docstring wins over its base's, as its default does.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source (e.g. built in a REPL): no help text
            continue
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef)).body
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def help_line(doc: str) -> str:
    """The help text of a docstring: its first line, reST ````literals```` shown plain."""
    return doc.strip().split("\n", 1)[0].replace("``", "")
