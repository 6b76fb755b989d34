"""Values a check program reported, decoded on the trainer's side, where they are judged.

The lines come from a process that ran model-written code, so they are hostile data: decoded
with `json` and a fixed set of tags (`trainer.harness` writes them), never with pickle or eval.
What comes out is plain Python data, so comparing it runs no code the solution wrote:

- builtin values are themselves (ints and floats from hex, exactly);
- numpy scalars and arrays come back as numpy values of the same dtype (only bool, int, uint,
  float, complex and string dtypes);
- a subclass of a builtin type (a namedtuple, a `defaultdict`, an `IntEnum`) comes back as a
  subclass of the same builtin that compares as the builtin does (the solution's `__eq__` is
  not kept) and whose `type()` is not the builtin, as EvalPlus's type check sees it;
- any other object is an `Opaque`, equal to nothing but itself.

Each decoded container or foreign value keeps its encoding, so it encodes back to the same tree
(the replay compares arguments by their encoding).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from trainer.harness import ENCODED_ATTR, MAX_DEPTH

_DTYPE = re.compile(r"^[<>|=]?(?:[biufc]\d{1,2}|[US]\d{1,7})$")


class Undecodable(ValueError):
    """A line or value that the harness does not write."""


class Opaque:
    """An object of a class the solution defined (or one the encoding does not carry)."""

    def __init__(self, tree) -> None:
        setattr(self, ENCODED_ATTR, tree)
        self.typename = tree[1]

    def __eq__(self, other) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<{self.typename} object>"


Opaque.__selfalign_encoded__ = True   # pyright: ignore[reportAttributeAccessIssue]  (the marker)
_FOREIGN: dict[type, type] = {}


def _foreign(base: type) -> type:
    """A subclass of `base` standing for a subclass the solution returned."""
    cls = _FOREIGN.get(base)
    if cls is None:
        cls = type(f"Foreign{base.__name__.capitalize()}", (base,), {ENCODED_ATTR: True})
        _FOREIGN[base] = cls
    return cls


def decode(tree, depth: int = 0) -> Any:
    if depth > MAX_DEPTH + 2:
        raise Undecodable("nested too deep")
    if tree is None:
        return None
    if not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
        raise Undecodable(f"not a tagged value: {str(tree)[:80]}")
    tag, args = tree[0], tree[1:]
    try:
        if tag == "b" and len(args) == 1 and isinstance(args[0], bool):
            return args[0]
        if tag == "i" and len(args) == 1:
            return int(_str(args[0]), 16)
        if tag == "f" and len(args) == 1:
            return float.fromhex(_str(args[0]))
        if tag == "c" and len(args) == 2:
            return complex(float.fromhex(_str(args[0])), float.fromhex(_str(args[1])))
        if tag == "s" and len(args) == 1:
            return _str(args[0])
        if tag in ("y", "ya") and len(args) == 1:
            raw = base64.b64decode(_str(args[0]), validate=True)
            return raw if tag == "y" else bytearray(raw)
        if tag in ("l", "t", "set", "fs") and len(args) == 1 and isinstance(args[0], list):
            items = [decode(i, depth + 1) for i in args[0]]
            return {"l": list, "t": tuple, "set": set, "fs": frozenset}[tag](items)
        if tag == "d" and len(args) == 1 and isinstance(args[0], list):
            out = {}
            for pair in args[0]:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise Undecodable("a dict item is not a pair")
                out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
            return out
        if tag == "fr" and len(args) == 2:
            return Fraction(int(_str(args[0]), 16), int(_str(args[1]), 16))
        if tag == "dec" and len(args) == 1:
            return Decimal(_str(args[0]))
        if tag == "np" and len(args) == 2:
            return _numpy_dtype(args[0]).type(decode(args[1], depth + 1))
        if tag == "nd" and len(args) == 3:
            import numpy as np

            shape = args[1]
            if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
                raise Undecodable("bad array shape")
            array = np.array(decode(args[2], depth + 1), dtype=_numpy_dtype(args[0]))
            if list(array.shape) != shape:
                raise Undecodable("array shape does not match its values")
            return array
        if tag == "sub" and len(args) == 2:
            _str(args[0])
            value = decode(args[1], depth + 1)
            base = type(value)
            if base is bool:
                base = int   # bool cannot be subclassed; an int subclass compares the same
            if base not in (int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset):
                raise Undecodable("a subclass of something that is not a builtin")
            out = _foreign(base)(value)
            setattr(out, ENCODED_ATTR, tree)   # it encodes back to what the harness wrote
            return out
        if tag == "o" and len(args) == 1:
            _str(args[0])
            return Opaque(tree)
    except Undecodable:
        raise
    except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
        raise Undecodable(f"bad {tag!r} value: {exc}") from None
    raise Undecodable(f"unknown tag {tag!r}")


def _str(x) -> str:
    if not isinstance(x, str):
        raise Undecodable("expected a string")
    return x


def _numpy_dtype(text):
    import numpy as np

    if not isinstance(text, str) or not _DTYPE.match(text):
        raise Undecodable(f"unsupported dtype {str(text)[:20]!r}")
    return np.dtype(text)


# -- the lines of one check program -------------------------------------------------------------

@dataclass
class Report:
    """What a check program wrote, parsed; `problem` is set when it is not what the harness writes."""
    events: list
    problem: str = ""


def read_lines(stdout: bytes, truncated: bool = False) -> Report:
    events = []
    if truncated:
        return Report(events, "its output was cut at the output limit")
    for n, line in enumerate(stdout.splitlines(), 1):
        try:
            event = json.loads(line)
        except ValueError:
            return Report(events, f"line {n} is not JSON")
        if not isinstance(event, list) or not event or not isinstance(event[0], str):
            return Report(events, f"line {n} is not an event")
        events.append(event)
    return Report(events)
