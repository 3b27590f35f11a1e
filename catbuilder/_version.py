"""The version of catbuilder (one place, read by the package and its outputs)."""

__version__ = "0.1.0"
