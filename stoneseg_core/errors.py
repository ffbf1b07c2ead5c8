"""Typed errors whose messages a geologist can act on."""

from __future__ import annotations


class StonesegError(Exception):
    """Base class: every error StoneSeg raises on purpose. The message is for the user."""


class ImageReadError(StonesegError):
    """An image file is missing, empty, corrupt or not an image."""


class MaskError(StonesegError):
    """A mask cannot be read, does not fit its image, or cannot be written."""


class DataError(StonesegError):
    """A data folder does not hold what training or evaluation needs."""


class ModelFileError(StonesegError):
    """A model folder is missing, damaged, foreign or from an incompatible version."""


class WeightsUnavailableError(StonesegError):
    """Pretrained encoder weights could not be downloaded or read."""


class OutOfMemoryError(StonesegError):
    """The device ran out of memory; the message says what to reduce."""
