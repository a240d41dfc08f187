"""The form's choices: its presets, and what a form posted without JavaScript is offered again."""

from __future__ import annotations

from typing import Any

from flask import request, session

import imaging

#: The form's output fields the page remembers between visits, beside its ops and their arguments.
CHOICE_FIELDS = ("format", "quality", "metadata", "colour")
#: Named sets of choices; the page's script fills the form with one (static/form.js).
PRESETS = {
    "Web: 1600 px WebP": {"ops": ["resize"], "args": {"resize": ["1600x1600", "contain"]}, "format": "webp"},
    "Thumbnail 320": {"ops": ["thumbnail"], "args": {"thumbnail": ["320"]}, "format": "auto"},
    "Black and white": {"ops": ["grayscale"], "format": "auto"},
}


def remember_choices() -> None:
    """Keep what a form posted without JavaScript asked for, so the next page offers it again.

    (The script keeps the form's choices in the browser instead.) Only op
    names the registry knows are kept, and no value longer than the form allows.
    """
    form = request.form
    choices: dict[str, Any] = {name: form.get(name, "")[:20] for name in CHOICE_FIELDS}
    choices["ops"] = [name for name in form.getlist("ops") if name in imaging.OPS]
    choices["args"] = {name: [value[:40] for value in form.getlist(f"arg-{name}")][:2]
                       for name, op in imaging.OPS.items() if op.param}
    if session.get("choices") != choices:
        session["choices"] = choices


def form_choices() -> dict[str, Any]:
    """What the form shows ticked and filled in: the session's last posted choices, else the defaults."""
    defaults: dict[str, Any] = {"ops": list(imaging.DEFAULT_OPS), "args": {}, **dict.fromkeys(CHOICE_FIELDS, "")}
    return {**defaults, **session.get("choices", {})}
