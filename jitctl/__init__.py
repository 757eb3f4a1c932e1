"""jitctl: a just-in-time access broker that lives in the terminal."""

__version__ = "0.1.0"
