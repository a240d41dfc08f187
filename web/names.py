"""Names that came from clients, fit to show and to save.

A file name is the client's text: it may carry characters that reorder
what is shown (``invoice\u202egpj.exe`` displays as "invoiceexe.jpg"), and
names no file system takes, or only some (Windows refuses ``CON.jpg``, a
trailing dot, 300-byte names). Every name Darkroom shows or sends passes
through here; none is ever used as a path on the server.
"""

from __future__ import annotations

import re
import unicodedata

#: Unicode categories never kept in a name: controls, format characters (the
#: bidi overrides, isolates and marks among them), line and paragraph separators, lone surrogates.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
#: Format characters kept all the same: the joiners that emoji sequences and several scripts need.
_JOINERS = frozenset({"\u200c", "\u200d"})
#: Characters some file system refuses in a name (Windows' list, the strictest), each run replaced by "_".
_UNSAFE = re.compile(r'[<>:"/\\|?*]+')
#: Names Windows keeps for devices, whatever follows the first dot ("CON.jpg", "com1.tar.gz").
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$",
                       *(f"{device}{n}" for device in ("COM", "LPT") for n in "0123456789¹²³")})
#: The longest name shown for a file.
DISPLAY_CHARS = 200
#: The longest file name offered, and the longest folder name in a ZIP: together, with the
#: "/" between them, an entry's path stays under Windows' 255 characters, each part under 255 bytes.
FILE_CHARS, FILE_BYTES = 140, 240
FOLDER_CHARS, FOLDER_BYTES = 100, 240


def visible(text: str) -> str:
    """``text`` without the characters that are invisible or reorder what is shown."""
    return "".join(c for c in text if c in _JOINERS or unicodedata.category(c) not in _INVISIBLE)


def display_name(filename: str | None) -> str:
    """The client's file name fit to show (never used as a path): visible characters, at most 200."""
    return visible(filename or "").strip()[:DISPLAY_CHARS].strip() or "upload"


def cut(text: str, chars: int, max_bytes: int) -> str:
    """``text`` cut to at most ``chars`` characters and ``max_bytes`` bytes of UTF-8, at a character's end."""
    text = text[:max(0, chars)]
    while len(text.encode()) > max_bytes:
        text = text[:-1]
    return text


def file_name(stem: str, suffix: str = "", *, chars: int = FILE_CHARS, max_bytes: int = FILE_BYTES) -> str:
    """A name every common file system takes: ``stem`` made safe and cut so that ``stem + suffix`` fits.

    ``suffix`` is Darkroom's own (``"-grayscale.jpg"``, ``" (2)"``) and is
    kept whole. The result has no character Windows refuses, no trailing
    dot or space, no reserved device name, and is never empty.
    """
    safe = _UNSAFE.sub("_", visible(stem)).strip(" ._")
    # One character to spare for the "_" a device name gets.
    safe = cut(safe, chars - len(suffix) - 1, max_bytes - len(suffix.encode()) - 1).rstrip(" .") or "image"
    if safe.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        safe = "_" + safe
    return safe + suffix


def folder_name(stem: str, suffix: str = "") -> str:
    """A folder's name in a ZIP, by the rules of :func:`file_name`, shorter so that a file's fits inside it."""
    return file_name(stem, suffix, chars=FOLDER_CHARS, max_bytes=FOLDER_BYTES)
