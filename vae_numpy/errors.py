"""Errors that the library raises on purpose.

Every error a user can provoke with bad input is a subclass of :class:`VAEError`, so
the command line can print it as one line and exit non-zero, while a bug in the
library still shows its full traceback. The messages say what was wrong, with the
offending value, and what to do about it.
"""


class VAEError(Exception):
    """Base class of the errors that report bad input rather than a bug."""


class ConfigError(VAEError, ValueError):
    """A model, optimizer or training setting is out of range."""


class InputError(VAEError, ValueError):
    """An array handed to the model has the wrong shape, dtype or values."""


class DataError(VAEError, OSError):
    """A data file is missing, corrupt, truncated or fails its checksum."""


class CheckpointError(VAEError, ValueError):
    """A checkpoint is unreadable or does not match the model it is loaded into."""


class NonFiniteError(VAEError, FloatingPointError):
    """Training produced a NaN or an infinity."""
