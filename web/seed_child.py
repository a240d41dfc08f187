"""The original question's functions, as the seed routes run them in a child.

A module of their own that imports nothing: a child imports it by name.
"""

from __future__ import annotations

from collections.abc import MutableMapping


def write_to_session(session: MutableMapping[str, str]) -> None:
    """The question's function: write one value into the session it is given."""
    session["inside_function"] = "inside"


def return_value() -> str:
    """The string the question tried to get back through ``Value(c_wchar_p)``."""
    return "inside"
