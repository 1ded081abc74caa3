"""Typed exceptions. Every message names the argument, what was received, and what is expected."""

from __future__ import annotations


class EmpgError(Exception):
    """Base class of every error empg raises on purpose."""


class InputError(EmpgError, ValueError):
    """An argument has the wrong shape, dtype, range or content."""


class ShapeError(InputError):
    """Tensor shapes do not match what the function expects (nothing is silently broadcast)."""


class NonFiniteError(InputError):
    """A tensor holds NaN or inf where finite values are required."""


class UnknownNameError(EmpgError, KeyError):
    """A name was looked up in a registry that does not hold it."""

    def __str__(self) -> str:  # KeyError would repr() the message; show it as written
        return str(self.args[0]) if self.args else ""


class ConfigError(EmpgError, ValueError):
    """A configuration value is invalid or inconsistent with another one."""


class CheckpointError(EmpgError, RuntimeError):
    """A checkpoint is missing or unreadable."""


class TrainingDivergedError(EmpgError, RuntimeError):
    """Too many consecutive updates had a non-finite loss or gradient."""
