"""monitor: a real-time presence hub for contact centres and the terminal app that watches it."""

__version__ = "0.1.0"
