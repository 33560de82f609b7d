"""Errors a user can cause, and the checks that raise them before long work starts.

:class:`UserError` marks a problem with what the user gave (a path, an option, a file's
contents) rather than a bug. The command line (:func:`mystyle_pl.cli.main`) prints such errors,
like missing files, unwritable folders and bad option values (``FileNotFoundError``,
``PermissionError``, ``ValueError``), as one line ``mystyle-pl: error: <path>: <problem>`` and
exits with status 2; any other exception is a bug and keeps its traceback. ``--debug`` (or
``MYSTYLE_DEBUG=1``) shows the traceback of a user error too.

This module imports nothing else from mystyle_pl, so every module may use it (except
``generators/``, which stays self-contained and raises ``ValueError`` subclasses instead).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input (path, option, file contents); the message names the path
    or option, says what is wrong and how to fix it. Printed as one line by the command line."""


class PredictInterrupted(Exception):
    """A run was stopped by a signal (SIGTERM) after finishing the batch in progress; its
    ``summary.json`` and ``failed.json`` list what was done and what was not. The command line
    exits with ``exit_code`` (143 = 128 + SIGTERM)."""

    exit_code = 143

    def __init__(self, message: str, signal_name: str = "SIGTERM") -> None:
        super().__init__(message)
        self.signal_name = signal_name


class OutputFolderError(UserError, OSError):
    """An output folder cannot be created or written (the message names it and the reason)."""


def ensure_writable_dir(path: str | os.PathLike, what: str = "output folder", hint: str = "") -> Path:
    """Create ``path`` (and its parents) if needed and prove it is writable by creating and deleting
    a temporary file in it. Returns the resolved folder.

    Raises :class:`OutputFolderError` ``"<path>: cannot write the <what> (<reason>)<hint>"`` when the
    path is a file, lies under a file, or cannot be created or written (permissions, read-only disk).

    >>> import tempfile, pathlib
    >>> d = ensure_writable_dir(pathlib.Path(tempfile.mkdtemp()) / "a" / "b")
    >>> d.is_dir()
    True
    """
    folder = Path(path).expanduser()
    suffix = f"; {hint}" if hint else ""
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder}: cannot write the {what} (it exists and is not a folder){suffix}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mystyle-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        where = f" ({e.filename})" if getattr(e, "filename", None) and Path(e.filename) != folder else ""
        raise OutputFolderError(f"{folder}: cannot write the {what} ({reason}{where}){suffix}") from e
    return folder.resolve()


def describe_error(error: BaseException) -> str:
    """One line for a user error: ``"<path>: <problem>"`` for OS errors that carry a file name
    (``[Errno 2] No such file or directory: 'x'`` becomes ``x: No such file or directory``), else
    the message's first line (further lines are joined with ``"; "``).

    >>> describe_error(FileNotFoundError(2, "No such file or directory", "a.png"))
    'a.png: No such file or directory'
    >>> describe_error(ValueError("bad value\\n  more"))
    'bad value; more'
    """
    if isinstance(error, OSError) and not isinstance(error, UserError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
        if error.filename2 is not None:
            text = f"{error.filename} -> {error.filename2}: {error.strerror}"
        return text
    text = str(error).strip()
    if isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(error).__name__


def check_paths(inputs: dict[str, list], outputs: dict[str, str | None]) -> None:
    """Refuse missing inputs and unwritable output folders before any long work (one-line errors).
    ``inputs``: option -> paths (None entries skipped); ``outputs``: option -> folder (created)."""
    for option, paths in inputs.items():
        for path in paths:
            if path is not None and not Path(path).exists():
                raise FileNotFoundError(2, f"not found ({option})", str(path))
    for option, folder in outputs.items():
        if folder is not None:
            ensure_writable_dir(folder, f"output folder ({option})", f"choose another with {option}")
