"""The web door: the monitor in a browser (``monitor web``)."""
