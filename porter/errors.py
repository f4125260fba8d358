"""One error tree: every error Porter raises on purpose derives from PorterError.

A class's docstring is its default message; errors that reach HTTP carry their status.
"""

from __future__ import annotations


class PorterError(Exception):
    """Porter failed."""

    status_code: int = 500

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or self.__class__.__name__).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(PorterError):
    """A setting is missing or invalid."""


class BadRequest(PorterError):
    """The request is malformed."""

    status_code = 400


class Unauthorized(PorterError):
    """Authentication failed."""

    status_code = 401


class Forbidden(PorterError):
    """Not allowed."""

    status_code = 403


class NotFound(PorterError):
    """No such thing."""

    status_code = 404


class Conflict(PorterError):
    """The request conflicts with the current state."""

    status_code = 409


class PayloadTooLarge(PorterError):
    """The request body is too large."""

    status_code = 413


class ChangesetError(PorterError):
    """The changeset is invalid."""

    status_code = 422


class CryptoError(PorterError):
    """A secret could not be decrypted."""


class GitHubError(PorterError):
    """A GitHub API call failed."""

    status_code = 502

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = retryable


class FlyError(PorterError):
    """A Fly Machines API call failed."""

    status_code = 502

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class NotificationError(PorterError):
    """A task notification could not be delivered."""

    def __init__(
        self,
        message: str | None = None,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
