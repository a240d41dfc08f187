"""What can go wrong with a call in a child, as exceptions that know their HTTP status."""

from __future__ import annotations


class HandoffError(Exception):
    """Base class: a call could not give back its value."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ChildFailed(HandoffError):
    """The function raised in the child, or the child died (a signal, its memory limit).

    ``type_name``, ``detail`` and ``traceback`` describe the exception raised
    in the child (``None`` when it died without one), ``errno`` its error
    number if it was an OSError; ``exitcode`` is the child's exit status
    (negative: the signal that killed it).
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
    """The call ran past its timeout; the child was killed and joined."""

    status_code = 504

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class Busy(HandoffError):
    """Every child slot of this process stayed taken for the whole queue timeout."""

    status_code = 503
    retry_after = 5
