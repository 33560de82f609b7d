"""Tasks: one degradation operator each, through the shared projection loop of :mod:`.base`."""

from .base import ProjectionResult, ProjectionSettings, Projector

__all__ = ["ProjectionResult", "ProjectionSettings", "Projector"]
