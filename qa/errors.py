"""Typed errors for user mistakes: each names the file or record and the problem.

The CLI turns any `QAError` into a one-line message and a non-zero exit instead of a
traceback; the pipeline turns it into an `ErrorRecord` and goes on with the batch.
"""

from __future__ import annotations


class QAError(Exception):
    """Base for errors a user can act on."""

    def __init__(self, message: str, *, file: str | None = None) -> None:
        self.file = file
        super().__init__(f"{file}: {message}" if file else message)
        self.reason = message


class AudioError(QAError):
    """The audio cannot be used. Subclasses say why."""


class NotAudioError(AudioError):
    pass


class CorruptAudioError(AudioError):
    pass


class EmptyAudioError(AudioError):
    pass


class SilentAudioError(AudioError):
    pass


class NoSpeechError(AudioError):
    """The recording has sound but nobody speaks in it (noise, a dead line, music)."""


class TooLongAudioError(AudioError):
    pass


class ModelNotFoundError(QAError):
    pass


class ScorecardError(QAError):
    """A scorecard file is invalid; carries the line where the problem is when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.line = line
        where = f"{file}:{line}" if file and line else file
        super().__init__(message, file=where)


class MetadataError(QAError):
    pass


class StoreError(QAError):
    pass


class AccessDenied(QAError):
    """Raised by qa.workflow when a user asks for something their role may not see or do."""


class StaleEditError(QAError):
    """A record changed since the user loaded it; their edit is refused, not merged."""
