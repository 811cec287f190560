"""The terminal monitor: a live agent grid over the hub's topics, and your own status."""
