"""Call control on a node of many: the parties may be connected to other nodes.

The call book is shared through the log (every node applies each call's new value); the
notices (CALL_STATE, INCOMING_CALL) go through the log too, so they reach the parties'
connections on every node, in log order with the topic messages; a callee connected
anywhere can be rung.
"""

from __future__ import annotations

from monitor.hub.calls import Call
from monitor.hub.callservice import Calls
from monitor.hub.cluster.ops import Notify
from monitor.hub.state import Effects, User


class ClusterCalls(Calls):
    """:class:`Calls` whose notices reach every node."""

    def _notify(self, effects: Effects, call: Call, notice: str) -> None:
        # The parties' connections on every node, this one included, get it from the log.
        effects.ops.append(Notify(call.project_id, call.parties(), notice))

    def _reachable(self, callee: User) -> bool:
        # Connected on any node (online), not only on this one.
        return callee.online

    def _ring(self, effects: Effects, callee: User, incoming: str) -> None:
        # Every node rings the callee's connections it holds, from the log.
        effects.ops.append(Notify(callee.project_id, (callee.user_id,), incoming))
