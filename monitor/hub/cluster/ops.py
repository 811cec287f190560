"""What a node of a multi-node hub proposes to Redis (besides the store rows of state.py).

A proposal is decided by Redis, not by the node: whether a value changed, the seq of each
topic message, whether a user went online or offline. The node learns the outcome from the
log, like every other node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)  # not frozen: one per change, and a frozen __init__ costs 4x
class Change:
    """Set one attribute; Redis publishes it if it differs (or ``always``), to
    ``topics`` (a connection's grants) or, when None, to the user's latest grants."""

    project_id: int
    user_id: str
    name: str
    value: Any
    updated_ms: int
    extra: Mapping[str, Any] | None = None
    always: bool = False
    topics: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Connect:
    """A connection of this node authenticated: the user is online while it lasts. (Its
    AUTHEN is answered once the proposal is in the log and applied here: see
    :meth:`monitor.hub.cluster.coordinator.RedisCoordinator.attach`.)"""

    project_id: int
    user_id: str
    connection_id: str
    now_ms: int
    client: str = "{}"  # the client's description (JSON), for every node's ``clients``
    # Filled in by the store: the user's clients on other nodes (JSON texts).
    others: list[str] = field(default_factory=list, compare=False)


@dataclass(frozen=True, slots=True)
class Disconnect:
    """A connection of this node is gone. If it was the user's last on any node, the
    user goes offline after ``grace_ms`` (0: now), see :class:`Expire`."""

    project_id: int
    user_id: str
    connection_id: str
    now_ms: int
    grace_ms: int


@dataclass(frozen=True, slots=True)
class Expire:
    """The grace period of a user who left this node ran out: offline, unless the user
    has a connection again somewhere or left again later."""

    project_id: int
    user_id: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class Introduce:
    """A user made known without a connection (REST): offline, published, unless Redis
    already knows its presence."""

    project_id: int
    user_id: str
    now_ms: int


@dataclass(frozen=True, slots=True)
class Notify:
    """A frame for every connection, on every node, of some users (call notices, other
    devices of a user), but the connection ``skip`` (a connection id) if given; with
    ``if_others``, only when the one user holds another connection somewhere."""

    project_id: int
    user_ids: tuple[str, ...]
    frame: str
    skip: str = ""
    if_others: bool = False


@dataclass(frozen=True, slots=True)
class Kick:
    """Close every connection of a user on every node. A supervisor's logout also holds
    the user's logins until ``hold_until_ms`` (0: a plain disconnect), on every node."""

    project_id: int
    user_id: str
    hold_until_ms: int = 0
    by: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Guarded:
    """``ops`` (one call-control operation's) happen only if each call of ``checks`` is
    still in the status this node saw (call id, status; '' for a call not made yet);
    else Redis refuses them all, and the operation fails: another node changed the call
    first, and its outcome is in the log."""

    project_id: int
    checks: tuple[tuple[str, str], ...]
    ops: tuple[Any, ...]


ClusterOp = Change | Connect | Disconnect | Expire | Introduce | Notify | Kick | Guarded
