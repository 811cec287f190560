"""The demo: simulated agents on an embedded hub, watched by the monitor."""
