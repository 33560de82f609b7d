"""Errors raised while reading checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint could not be read: the message names the file and what is wrong."""
