"""Many hub nodes on one Redis: Redis holds the state and orders topic messages.

Each node keeps a :class:`~monitor.hub.state.HubState` as its view. A change a node makes
is proposed to Redis as one Lua script (compare, store, number, append to the project's
log stream); every node reads the log and applies it to its view in log order, then fans
the messages out to its own connections. See docs/scaling.md.
"""
