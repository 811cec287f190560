"""The SSH front door: ``monitor ssh-serve``, the monitor for anyone with an SSH client."""
