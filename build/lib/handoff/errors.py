"""Everything a call can raise, as one closed hierarchy of exceptions that know their HTTP status.

``run``, ``submit``, ``handle`` and ``Handle.result`` raise only
:class:`HandoffError` subclasses, except for the exception types an app names
in ``HANDOFF_RERAISE``: those travel back from the child as themselves, with
the child's traceback as their ``__cause__``.
"""

from __future__ import annotations


class HandoffError(Exception):
    """Base class: a call could not give back its value."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChildFailed(HandoffError):
    """The function raised in the child, the child died (a signal, its memory limit), or none could start.

    ``type_name``, ``detail`` and ``traceback`` describe the exception raised
    in the child (``None`` when it died without one), ``errno`` its error
    number if it was an OSError; ``exitcode`` is the child's exit status
    (negative: the signal that killed it; ``None``: it never started).
    """

    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        type_name: str | None = None,
        detail: str | None = None,
        traceback: str | None = None,
        exitcode: int | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.type_name = type_name
        self.detail = detail
        self.traceback = traceback
        self.exitcode = exitcode

    @property
    def out_of_memory(self) -> bool:
        """Whether the child ran out of the memory a call may use."""
        return self.type_name == "MemoryError"


class Timeout(HandoffError):
    """The call ran past its timeout; the child and its process group were killed, the child joined."""

    status_code = 504

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class Busy(HandoffError):
    """Every child slot of this process stayed taken for the whole queue timeout."""

    status_code = 503
    retry_after = 5


class NotFinished(HandoffError, TimeoutError):
    """``Handle.result(timeout)``: the submitted call has not finished within ``timeout``."""

    status_code = 202


class AlreadyCollected(HandoffError, KeyError):
    """``Handle.result()``: another request collected this call's result first."""

    status_code = 410

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class NoSuchCall(HandoffError, KeyError):
    """``handle(id)``: this session submitted no call with that id (or it was collected long ago)."""

    status_code = 404

    def __str__(self) -> str:
        return self.message
