"""The hub's state machine: presence, attributes, topics, seq/epoch, snapshots. Pure.

No sockets, no clocks: callers pass ``now_ms`` and get back :class:`Effects` saying what to
store and what to send to whom. Connections are opaque hashable handles chosen by the
I/O layer. Every grant check happens here, so the rule "a client only receives topics its
token subscribes to, a change goes only to the topic its grant names" lives in one place.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from monitor.hub.history import AttributeEvent, LogEvent
from monitor.protocol import (
    ALL_CALL_STATUS,
    BUILTIN_ATTRIBUTES,
    CALL,
    OFFLINE,
    ONLINE,
    ONLINE_STATUS,
    Result,
    Service,
    encode,
    is_attribute_name,
    is_topic_name,
    is_valid_value,
    reply,
)
from monitor.tokens import ClientClaims, Grants

Handle = Hashable
# A frame's text and who gets it. The text may be a function that makes it, for frames
# only sent when something fails: no need to encode them for every request.
Send = tuple[Sequence[Handle], str | Callable[[], str]]
ENDED = "Ended"
MAX_CHANGES_PER_REQUEST = 50
DEFAULT_MAX_ATTRIBUTES_PER_USER = 64


# -- what the store persists ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user's durable record (attributes are separate rows)."""

    project_id: int
    user_id: str
    display_name: str | None
    login_time: int | None
    grants: Grants


@dataclass(frozen=True, slots=True)
class AttributeRow:
    """One attribute value of one user, with the time it was set."""

    project_id: int
    user_id: str
    name: str
    value: Any
    updated_ms: int


@dataclass(frozen=True, slots=True)
class CallRow:
    """An active call as stored (``data`` is ``Call.to_json()``); ``None`` deletes it.
    ``expected``: the call's status before this change ('' for a new call), which an
    engine shared by several nodes checks (see :meth:`Coordinator.guard`)."""

    project_id: int
    call_id: str
    data: dict[str, Any] | None
    expected: str | None = None


StoreOp = UserRow | AttributeRow | CallRow


@dataclass(slots=True)
class Effects:
    """What one operation asks of the I/O layer, in order.

    ``ops`` must be durable before ``sends`` go out; if they cannot be made durable,
    ``undo`` runs and ``failure_sends`` go out instead. ``then`` makes sends that can
    only be made once the ops are durable (and, on several nodes, applied here: the
    AUTHEN reply counts what the log brought before it); they go out before ``sends``.
    ``log``: what the event log records of them, made durable with the ops.
    ``refused_sends`` go out instead of ``failure_sends`` when an engine shared by several
    nodes refused the ops because what they guard changed meanwhile (:meth:`Coordinator.guard`).
    """

    ops: list[Any] = field(default_factory=list)  # StoreOp, or an engine's own proposals
    log: list[LogEvent] = field(default_factory=list)
    sends: list[Send] = field(default_factory=list)
    failure_sends: list[Send] = field(default_factory=list)
    refused_sends: list[Send] = field(default_factory=list)
    undo: list[Callable[[], None]] = field(default_factory=list)
    then: list[Callable[[], list[Send]]] = field(default_factory=list)
    result: Result = Result.SUCCESS
    message: str | None = None

    def extend(self, other: Effects) -> None:
        """Append another operation's effects after these."""
        self.ops += other.ops
        self.log += other.log
        self.sends += other.sends
        self.failure_sends += other.failure_sends
        self.refused_sends += other.refused_sends
        self.undo += other.undo
        self.then += other.then


# -- the model ------------------------------------------------------------------------


@dataclass(slots=True)
class Attribute:
    value: Any
    updated_ms: int
    # What the change's topic message added (a call's callId, from, to): a snapshot
    # carries it too, so a client that joins mid-call knows who the call is with.
    extra: Mapping[str, Any] | None = None


@dataclass(slots=True)
class Session:
    """One authenticated connection."""

    handle: Handle
    connection_id: str
    user: User
    grants: Grants
    client: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LoginHold:
    """A supervisor logged the user out: AUTHEN is refused until ``until_ms``."""

    until_ms: int
    by: str
    reason: str


@dataclass(slots=True)
class User:
    project_id: int
    user_id: str
    display_name: str | None = None
    login_time: int | None = None
    grants: Grants = field(default_factory=Grants)
    attributes: dict[str, Attribute] = field(default_factory=dict)
    sessions: dict[Handle, Session] = field(default_factory=dict)
    offline_due_ms: int | None = None
    hold: LoginHold | None = None

    @property
    def online(self) -> bool:
        current = self.attributes.get(ONLINE_STATUS)
        return current is not None and current.value == ONLINE

    def value(self, name: str) -> Any:
        current = self.attributes.get(name)
        return None if current is None else current.value

    def in_call(self) -> bool:
        status = self.value(CALL)
        return status is not None and status != ENDED

    def public(self) -> dict[str, Any]:
        """The user object of the REST API."""
        attributes: list[dict[str, Any]] = []
        for name in (ONLINE_STATUS, CALL):
            entry: dict[str, Any] = {"attribute": name}
            if name in self.attributes:
                entry["value"] = self.attributes[name].value
            attributes.append(entry)
        for name, attr in sorted(self.attributes.items()):
            if name not in BUILTIN_ATTRIBUTES:
                attributes.append({"attribute": name, "value": attr.value})
        out: dict[str, Any] = {"loginTime": self.login_time, "attributes": attributes,
                               "chatCustomer": False, "userId": self.user_id}
        if self.display_name:
            out["displayName"] = self.display_name
        return out


@dataclass(slots=True)
class Topic:
    project_id: int
    name: str
    epoch: str
    history: deque[tuple[int, str]]
    seq: int = 0
    subscribers: set[Handle] = field(default_factory=set)
    # (userId, attribute) pairs whose changes go to this topic, by the users' latest grants
    publishers: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """The result of a successful :meth:`HubState.authenticate`."""

    session: Session
    effects: Effects


def new_epoch() -> str:
    """A fresh topic epoch: seq numbers restart with it (each hub start)."""
    return secrets.token_hex(6)


# -- who decides: the one place one node and several differ ------------------------------


class Coordinator(Protocol):
    """Where the state's shared changes are decided.

    On one node the state decides at once (:class:`LocalCoordinator`). On several nodes
    an authority every node follows decides (Redis: :mod:`monitor.hub.cluster.coordinator`):
    the state proposes, and applies the outcome when the log brings it. The state calls
    these and nothing else differs; connections, subscriptions and replies stay local.
    """

    def topic_epoch(self, project_id: int) -> str:
        """The epoch of a topic the state meets for the first time."""
        ...

    def set_value(self, state: HubState, user: User, name: str, new: Any, now_ms: int,
                  extra: Mapping[str, Any] | None, always: bool,
                  grants: Grants | None) -> Effects:
        """Set one attribute of ``user`` (see :meth:`HubState.apply_value`)."""
        ...

    def attach(self, state: HubState, session: Session, body: dict[str, Any],
               resume: object, effects: Effects) -> None:
        """Answer a login whose reply is ``body`` (without its topics yet): through
        :meth:`HubState.attach`, once the login is decided."""
        ...

    def detach(self, state: HubState, session: Session, effects: Effects, now_ms: int,
               immediate: bool) -> None:
        """A connection is gone (its local part already forgotten)."""
        ...

    def grace_ran_out(self, state: HubState, user: User, now_ms: int) -> Effects:
        """A user's offline grace period ended with no connection here."""
        ...

    def introduce(self, state: HubState, user: User, now_ms: int) -> Effects:
        """A user made known without a connection (REST): offline, published, unless
        its presence is known already."""
        ...

    def notify(self, state: HubState, effects: Effects, project_id: int,
               user_ids: Sequence[str], frame: Callable[[], str], skip: str = "",
               if_others: bool = False) -> None:
        """Send the frame ``frame()`` makes (at once, if it is sent at all) to every
        connection of ``user_ids`` but the connection ``skip`` (``if_others``: only when
        the one user holds another connection somewhere)."""
        ...

    def reachable(self, user: User) -> bool:
        """Whether ``user`` has a connection anywhere (a callee to ring)."""
        ...

    def log_out(self, state: HubState, effects: Effects, user: User, hold: LoginHold) -> None:
        """A supervisor logs ``user`` out: ``hold`` refuses the user's logins, on every
        node, and the user's connections close (after what ``effects`` sends them)."""
        ...

    def guard(self, effects: Effects) -> Effects:
        """Make ``effects`` (one call-control operation's) all or nothing against other
        nodes: refused, as a whole, if a call its :class:`CallRow` ops change is no longer
        in the status they expect (two nodes changing one call: exactly one wins)."""
        ...

    @property
    def presence_is_local(self) -> bool:
        """Whether this node's connections are all the user's (one node): a user whose
        last connection here closed has none anywhere."""
        ...


class LocalCoordinator:
    """One node: the state decides everything at once."""

    def __init__(self, epoch: Callable[[], str] = new_epoch) -> None:
        self._epoch = epoch

    def topic_epoch(self, project_id: int) -> str:
        return self._epoch()

    def set_value(self, state: HubState, user: User, name: str, new: Any, now_ms: int,
                  extra: Mapping[str, Any] | None, always: bool,
                  grants: Grants | None) -> Effects:
        return state.apply_value(user, name, new, now_ms, extra, always, grants)

    def attach(self, state: HubState, session: Session, body: dict[str, Any],
               resume: object, effects: Effects) -> None:
        # The reply, then what the client missed, before the news for everyone else.
        effects.sends[:0] = state.attach(session, body, resume)

    def detach(self, state: HubState, session: Session, effects: Effects, now_ms: int,
               immediate: bool) -> None:
        pass

    def grace_ran_out(self, state: HubState, user: User, now_ms: int) -> Effects:
        return state.set_value(user, ONLINE_STATUS, OFFLINE, now_ms)

    def introduce(self, state: HubState, user: User, now_ms: int) -> Effects:
        if ONLINE_STATUS in user.attributes:
            return Effects()
        return state.set_value(user, ONLINE_STATUS, OFFLINE, now_ms)

    def notify(self, state: HubState, effects: Effects, project_id: int,
               user_ids: Sequence[str], frame: Callable[[], str], skip: str = "",
               if_others: bool = False) -> None:
        targets = [handle for user_id in user_ids
                   for handle, session in state.user_sessions(project_id, user_id)
                   if session.connection_id != skip]
        if targets:
            effects.sends.append((targets, frame()))

    def reachable(self, user: User) -> bool:
        return bool(user.sessions)

    def guard(self, effects: Effects) -> Effects:
        return effects  # nobody else changes a call meanwhile

    @property
    def presence_is_local(self) -> bool:
        return True

    def log_out(self, state: HubState, effects: Effects, user: User, hold: LoginHold) -> None:
        # Held at once; the hub closes the connections once the effects are sent.
        before, user.hold = user.hold, hold

        def undo() -> None:
            user.hold = before

        effects.undo.append(undo)


class HubState:
    """All projects' users, topics and connections on this node."""

    def __init__(self, project_ids: Iterable[int], *, history_size: int = 1000,
                 offline_grace_ms: int = 3000, ping_after_ms: int = 15000,
                 max_attributes_per_user: int = DEFAULT_MAX_ATTRIBUTES_PER_USER,
                 epoch: Callable[[], str] = new_epoch,
                 coordinator: Coordinator | None = None) -> None:
        """``coordinator``: who decides shared changes (default: this node, with topic
        epochs from ``epoch``)."""
        self.project_ids = frozenset(project_ids)
        self.history_size = history_size
        # Custom attributes one user may hold (onlineStatus and call not counted).
        self.max_attributes_per_user = max_attributes_per_user
        self.offline_grace_ms = offline_grace_ms
        self.ping_after_ms = ping_after_ms
        self.coordinator: Coordinator = coordinator or LocalCoordinator(epoch)
        self.users: dict[tuple[int, str], User] = {}
        self.topics: dict[tuple[int, str], Topic] = {}
        self.sessions: dict[Handle, Session] = {}
        self._offline_due: dict[tuple[int, str], User] = {}
        self._next_connection = 0

    # -- loading ------------------------------------------------------------------------

    def load_user(self, row: UserRow, now_ms: int) -> User:
        """Restore a user from the store; everyone starts offline."""
        user = self.user_or_new(row.project_id, row.user_id)
        user.display_name = row.display_name
        user.login_time = row.login_time
        self.set_grants(user, row.grants)
        user.attributes[ONLINE_STATUS] = Attribute(OFFLINE, now_ms)
        return user

    def load_attribute(self, row: AttributeRow) -> None:
        """Restore one stored attribute value."""
        self.restore_value(self.user_or_new(row.project_id, row.user_id), row.name,
                           row.value, row.updated_ms)

    def restore_value(self, user: User, name: str, value: Any, updated_ms: int,
                      extra: Mapping[str, Any] | None = None) -> None:
        """Set a value decided elsewhere (the store, another node), publishing nothing."""
        user.attributes[name] = Attribute(value, updated_ms, extra)
        if name == CALL:
            self.topic(user.project_id, ALL_CALL_STATUS).publishers.add((user.user_id, CALL))

    # -- lookups ------------------------------------------------------------------------

    def user(self, project_id: int, user_id: str) -> User | None:
        return self.users.get((project_id, user_id))

    def project_users(self, project_id: int) -> list[User]:
        return [u for (pid, _), u in self.users.items() if pid == project_id]

    def user_or_new(self, project_id: int, user_id: str) -> User:
        key = (project_id, user_id)
        user = self.users.get(key)
        if user is None:
            user = self.users[key] = User(project_id, user_id)
        return user

    def topic(self, project_id: int, name: str) -> Topic:
        key = (project_id, name)
        topic = self.topics.get(key)
        if topic is None:
            topic = self.topics[key] = Topic(project_id, name,
                                             self.coordinator.topic_epoch(project_id),
                                             deque(maxlen=self.history_size))
        return topic

    def set_grants(self, user: User, grants: Grants) -> None:
        """Make ``grants`` the user's latest and index who publishes to which topic."""
        for g in user.grants.attributes:
            topic = self.topics.get((user.project_id, g.topic))
            if topic is not None:
                topic.publishers.discard((user.user_id, g.attribute))
        user.grants = grants
        for g in grants.attributes:
            self.topic(user.project_id, g.topic).publishers.add((user.user_id, g.attribute))

    # -- publishing: the one place topic messages are made ---------------------------------

    @staticmethod
    def message(project_id: int, user_id: str, name: str, old: Any, new: Any, now_ms: int,
                call_ended: bool, display_name: str | None,
                extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``message`` of a topic message about one attribute change."""
        message: dict[str, Any] = {
            "attribute": name, "newValue": new, "oldValue": old, "userId": user_id,
            "projectId": project_id, "timestamp": now_ms, "callEnded": call_ended,
        }
        if display_name:
            message["displayName"] = display_name
        if extra:
            message.update(extra)
        return message

    def _publish(self, user: User, name: str, old: Any, new: Any, now_ms: int,
                 extra: Mapping[str, Any] | None = None,
                 published: list[tuple[Topic, int]] | None = None,
                 topics: Sequence[str] = ()) -> list[Send]:
        if not topics:
            return []
        message = self.message(user.project_id, user.user_id, name, old, new, now_ms,
                               not user.in_call(), user.display_name, extra)
        return self.publish_message(user.project_id, message,
                                    [(t, None) for t in topics], published)

    @staticmethod
    def topics_of(user: User, name: str, grants: Grants | None = None) -> list[str]:
        """The topics a change of ``name`` goes to (``grants``: a connection's token)."""
        topics = list((user.grants if grants is None else grants).topics_for(name))
        if name == CALL:
            topics.append(ALL_CALL_STATUS)
        return topics

    def publish_message(self, project_id: int, message: Mapping[str, Any],
                        topics: Sequence[tuple[str, int | None]],
                        published: list[tuple[Topic, int]] | None = None) -> list[Send]:
        """Send ``message`` to ``topics``: each ``(name, seq)`` takes the next seq of the
        topic, or ``seq`` where given (a multi-node hub numbers messages centrally)."""
        sends: list[Send] = []
        for name_, seq in topics:
            topic = self.topic(project_id, name_)
            topic.seq = topic.seq + 1 if seq is None else seq
            frame = encode(Service.SUBSCRIBE_FROM_SERVER,
                           {"topic": topic.name, "seq": topic.seq, "message": message})
            topic.history.append((topic.seq, frame))
            if published is not None:
                published.append((topic, topic.seq))
            if topic.subscribers:
                sends.append((tuple(topic.subscribers), frame))
        return sends

    def set_value(self, user: User, name: str, new: Any, now_ms: int,
                  extra: Mapping[str, Any] | None = None, always: bool = False,
                  grants: Grants | None = None) -> Effects:
        """Set one value, as the coordinator decides (here and now on one node)."""
        return self.coordinator.set_value(self, user, name, new, now_ms, extra, always,
                                          grants)

    def apply_value(self, user: User, name: str, new: Any, now_ms: int,
                    extra: Mapping[str, Any] | None = None, always: bool = False,
                    grants: Grants | None = None) -> Effects:
        """Store and publish one value; publishes nothing when it is unchanged
        (unless ``always``: a second call can repeat a status with another callId).
        ``grants`` names the topics (a connection's token); default: the user's latest."""
        effects = Effects()
        current = user.attributes.get(name)
        old = None if current is None else current.value
        if current is not None and old == new and type(old) is type(new) and not always:
            return effects
        user.attributes[name] = Attribute(new, now_ms, extra)
        if name != ONLINE_STATUS:
            effects.ops.append(AttributeRow(user.project_id, user.user_id, name, new, now_ms))
        topics = self.topics_of(user, name, grants)
        effects.log.append(AttributeEvent(user.project_id, user.user_id, name, new, old, now_ms,
                                          tuple(topics), dict(extra) if extra else None))

        published: list[tuple[Topic, int]] = []

        def undo() -> None:
            if user.attributes.get(name) is not None and user.attributes[name].value == new:
                if current is None:
                    del user.attributes[name]
                else:
                    user.attributes[name] = current
            # The message was never sent: resume must not replay it, nor bridge its gap.
            for topic, seq in published:
                while topic.history and topic.history[0][0] <= seq:
                    topic.history.popleft()

        effects.undo.append(undo)
        effects.sends += self._publish(user, name, old, new, now_ms, extra, published, topics)
        return effects

    # -- attributes ---------------------------------------------------------------------

    def change_attributes(self, project_id: int, user_id: str, changes: object,
                          now_ms: int, grants: Grants | None = None,
                          extra: Mapping[str, Any] | None = None) -> Effects:
        """Apply ``[{"attribute", "value"}, ...]`` atomically (all or none) for a user.

        Used by CHANGE_ATTRIBUTE (one change, published through the grants of the token
        the connection logged in with) and the REST PUT (1-50, through the user's latest
        grants: ``grants`` None); a supervisor's change adds ``extra`` (``changedBy``) to
        its messages. Everything is checked before anything changes.
        """
        user = self.users.get((project_id, user_id))
        if user is None:
            return Effects(result=Result.USER_NOT_FOUND, message=f"user {user_id!r} not found")
        if not isinstance(changes, list) or not 1 <= len(changes) <= MAX_CHANGES_PER_REQUEST:
            return Effects(result=Result.INVALID_REQUEST,
                           message=f"expected 1-{MAX_CHANGES_PER_REQUEST} attribute changes")
        parsed: list[tuple[str, Any]] = []
        for item in changes:
            if not isinstance(item, dict) or "attribute" not in item or "value" not in item:
                return Effects(result=Result.INVALID_REQUEST,
                               message="each change needs attribute and value")
            name, value = item["attribute"], item["value"]
            if not isinstance(name, str):
                return Effects(result=Result.INVALID_REQUEST, message="attribute is not a string")
            if name in BUILTIN_ATTRIBUTES:
                return Effects(result=Result.READ_ONLY_ATTRIBUTE,
                               message=f"{name} is owned by the hub")
            if not is_attribute_name(name):
                return Effects(result=Result.INVALID_ATTRIBUTE,
                               message="attribute name must match [A-Za-z0-9_.-]{1,64}")
            if isinstance(value, dict | list):
                return Effects(result=Result.INVALID_REQUEST,
                               message="value must be a string, number, boolean or null")
            if not is_valid_value(value):
                return Effects(result=Result.INVALID_ATTRIBUTE,
                               message="value over 1024 bytes, with control characters, "
                                       "not finite or an integer beyond 64 bits")
            parsed.append((name, value))
        new_names = {name for name, _ in parsed if name not in user.attributes}
        held = len(user.attributes) - sum(1 for b in BUILTIN_ATTRIBUTES if b in user.attributes)
        if held + len(new_names) > self.max_attributes_per_user:
            return Effects(result=Result.INVALID_ATTRIBUTE,
                           message=f"a user holds at most {self.max_attributes_per_user} "
                                   "attributes")
        effects = Effects()
        for name, value in parsed:
            effects.extend(self.set_value(user, name, value, now_ms, extra, grants=grants))
        return effects

    def set_builtin(self, project_id: int, user_id: str, name: str, value: Any, now_ms: int,
                    extra: Mapping[str, Any] | None = None, always: bool = False) -> Effects:
        """Set a hub-owned attribute (``call``); for the hub's own services."""
        user = self.user_or_new(project_id, user_id)
        if name == CALL:
            self.topic(project_id, ALL_CALL_STATUS).publishers.add((user_id, CALL))
        return self.set_value(user, name, value, now_ms, extra, always)

    # -- connections and presence -------------------------------------------------------

    def authenticate(self, handle: Handle, project_id: int, claims: ClientClaims,
                     client: dict[str, Any], request_id: Any, now_ms: int,
                     resume: object = None) -> AuthOutcome:
        """Register an authenticated connection; publish online if the user was offline.

        All or nothing: should anything fail once the state has started to change (a
        reply that cannot be encoded, say), the connection is forgotten again and the
        error raised, so memory never holds a session the store and the client never saw.
        """
        before = self.users.get((project_id, claims.user_id))
        saved = None if before is None else (before.display_name, before.login_time,
                                             before.grants, before.offline_due_ms)
        effects = Effects()
        try:
            return self._authenticate(handle, project_id, claims, client, request_id,
                                      now_ms, resume, effects)
        except BaseException:
            for undo in reversed(effects.undo):  # online again, the message unsent
                undo()
            self._forget_failed_login(handle, project_id, claims.user_id, saved)
            raise

    def _forget_failed_login(self, handle: Handle, project_id: int, user_id: str,
                             saved: tuple[Any, ...] | None) -> None:
        self.sessions.pop(handle, None)
        for topic in self.topics.values():
            topic.subscribers.discard(handle)
        user = self.users.get((project_id, user_id))
        if user is None:
            return
        user.sessions.pop(handle, None)
        if saved is None:  # a user the hub had never seen: not seen still
            if not user.sessions:
                self.set_grants(user, Grants())
                del self.users[(project_id, user_id)]
            return
        user.display_name, user.login_time, grants, user.offline_due_ms = saved
        self.set_grants(user, grants)
        if user.offline_due_ms is not None:
            self._offline_due[(project_id, user_id)] = user

    def _authenticate(self, handle: Handle, project_id: int, claims: ClientClaims,
                      client: dict[str, Any], request_id: Any, now_ms: int,
                      resume: object, effects: Effects) -> AuthOutcome:
        self._next_connection += 1
        user = self.user_or_new(project_id, claims.user_id)
        connection_id = f"{secrets.token_hex(4)}-{self._next_connection}"
        # Stringee's SDK knows itself by its deviceId: use it as the clientId when sent.
        session = Session(handle, connection_id, user, claims.grants,
                          {**client, "clientId": client.get("deviceId") or connection_id})
        user.login_time = now_ms
        if claims.display_name:
            user.display_name = claims.display_name
        self.set_grants(user, claims.grants)
        effects.ops.append(UserRow(project_id, user.user_id, user.display_name, now_ms,
                                   claims.grants))
        user.sessions[handle] = session
        self.sessions[handle] = session
        # Back within the grace period: nothing to publish.
        user.offline_due_ms = None
        self._offline_due.pop((project_id, user.user_id), None)
        if not user.online:
            # A user the hub has never seen was offline until now, not unknown.
            user.attributes.setdefault(ONLINE_STATUS, Attribute(OFFLINE, now_ms))
            effects.extend(self.set_value(user, ONLINE_STATUS, ONLINE, now_ms))
        body = reply(Service.AUTHEN, request_id, Result.SUCCESS,
                     userId=user.user_id, projectId=project_id, connectionId=connection_id,
                     clients=[s.client for s in user.sessions.values()], ice_servers=[],
                     ping_after_ms=self.ping_after_ms, loginTime=now_ms,
                     **claims.grants.to_json())
        if user.display_name:
            body["displayName"] = user.display_name
        self.coordinator.notify(
            self, effects, project_id, (user.user_id,),
            partial(self.other_device_frame, user, session, "connected"),
            skip=connection_id, if_others=True)
        self.coordinator.attach(self, session, body, resume, effects)
        return AuthOutcome(session, effects)

    def attach(self, session: Session, body: dict[str, Any], resume: object) -> list[Send]:
        """Subscribe a connection whose login is decided to its topics, and make its
        AUTHEN reply: ``body`` with each topic's position (and what resume recovered),
        then the messages it missed. Subscribed after the login's own message: the
        reply's seq counts it, and a client that needs it reads it by snapshot or resume."""
        handle = session.handle
        project_id = session.user.project_id
        topics: dict[str, dict[str, Any]] = {}
        for name in session.grants.subscribe:
            topic = self.topic(project_id, name)
            topic.subscribers.add(handle)
            topics[name] = {"epoch": topic.epoch, "seq": topic.seq}
        body["topics"] = topics
        frames: list[str] = []
        if isinstance(resume, dict):
            body["recovered"], frames = self.replay(session, resume)
        sends: list[Send] = [((handle,), encode(Service.AUTHEN, body))]
        sends += [((handle,), frame) for frame in frames]
        return sends

    def replay(self, session: Session, resume: dict[Any, Any]
                ) -> tuple[dict[str, bool], list[str]]:
        recovered: dict[str, bool] = {}
        frames: list[str] = []
        for name, position in resume.items():
            if not isinstance(name, str) or not session.grants.may_receive(name):
                continue
            topic = self.topic(session.user.project_id, name)
            ok = False
            if isinstance(position, dict) and position.get("epoch") == topic.epoch:
                seq = position.get("seq")
                if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= topic.seq:
                    oldest = topic.history[0][0] if topic.history else topic.seq + 1
                    if seq + 1 >= oldest:
                        frames += [f for s, f in topic.history if s > seq]
                        ok = True
            recovered[name] = ok
        return recovered, frames

    def other_device_frame(self, user: User, session: Session, status: str) -> str:
        """OTHER_DEVICE_AUTHEN: ``status`` is "connected" or "disconnected" (the Web SDK
        reads exactly these), ``clientId`` as in the AUTHEN reply's ``clients``."""
        return encode(Service.OTHER_DEVICE_AUTHEN, {
            **session.client, "status": status, "userId": user.user_id,
            "projectId": user.project_id, "connectionId": session.connection_id,
            "clients": [s.client for s in user.sessions.values()],
        })

    def disconnect(self, handle: Handle, now_ms: int, immediate: bool = False) -> Effects:
        """Forget a connection. The last one of a user starts the offline grace period
        (or goes offline now when ``immediate`` or the grace is 0)."""
        effects = Effects()
        session = self.sessions.pop(handle, None)
        if session is None:
            return effects
        user = session.user
        user.sessions.pop(handle, None)
        for name in session.grants.subscribe:
            topic = self.topics.get((user.project_id, name))
            if topic is not None:
                topic.subscribers.discard(handle)
        self.coordinator.notify(
            self, effects, user.project_id, (user.user_id,),
            partial(self.other_device_frame, user, session, "disconnected"),
            skip=session.connection_id, if_others=True)
        if not user.sessions:
            if immediate or self.offline_grace_ms <= 0:
                effects.extend(self.set_value(user, ONLINE_STATUS, OFFLINE, now_ms))
            else:
                user.offline_due_ms = now_ms + self.offline_grace_ms
                self._offline_due[(user.project_id, user.user_id)] = user
        self.coordinator.detach(self, session, effects, now_ms, immediate)
        return effects

    def expire_offline(self, now_ms: int) -> Effects:
        """Take offline every user whose grace period has run out."""
        effects = Effects()
        for key, user in list(self._offline_due.items()):
            due = user.offline_due_ms
            if due is None or user.sessions:
                del self._offline_due[key]
            elif due <= now_ms:
                del self._offline_due[key]
                user.offline_due_ms = None
                effects.extend(self.coordinator.grace_ran_out(self, user, now_ms))
        return effects

    def next_offline_due_ms(self) -> int | None:
        """When the next user's grace period ends (None: nobody is in one)."""
        due = [u.offline_due_ms for u in self._offline_due.values()
               if u.offline_due_ms is not None]
        return min(due) if due else None

    def user_handles(self, project_id: int, user_id: str) -> list[Handle]:
        user = self.users.get((project_id, user_id))
        return [] if user is None else list(user.sessions)

    def user_sessions(self, project_id: int, user_id: str) -> list[tuple[Handle, Session]]:
        user = self.users.get((project_id, user_id))
        return [] if user is None else list(user.sessions.items())

    # -- snapshots ----------------------------------------------------------------------

    def snapshot(self, session: Session, topic_name: object, request_id: Any) -> str:
        """The TOPIC_SNAPSHOT reply frame for ``session``."""
        if not is_topic_name(topic_name):
            return encode(Service.TOPIC_SNAPSHOT, reply(
                Service.TOPIC_SNAPSHOT, request_id, Result.INVALID_REQUEST, "invalid topic"))
        assert isinstance(topic_name, str)
        if not session.grants.may_receive(topic_name):
            return encode(Service.TOPIC_SNAPSHOT, reply(
                Service.TOPIC_SNAPSHOT, request_id, Result.TOPIC_NOT_GRANTED,
                f"topic {topic_name!r} not granted by the token"))
        project_id = session.user.project_id
        topic = self.topic(project_id, topic_name)
        values: list[dict[str, Any]] = []
        for user_id, name in sorted(topic.publishers):
            user = self.users.get((project_id, user_id))
            if user is None or name not in user.attributes:
                continue
            attr = user.attributes[name]
            entry: dict[str, Any] = {"userId": user_id, "attribute": name,
                                     "value": attr.value, "timestamp": attr.updated_ms}
            if user.display_name:
                entry["displayName"] = user.display_name
            if name == CALL:
                entry["callEnded"] = not user.in_call()
            if attr.extra:
                entry.update({k: v for k, v in attr.extra.items() if k not in entry})
            values.append(entry)
        return encode(Service.TOPIC_SNAPSHOT, reply(
            Service.TOPIC_SNAPSHOT, request_id, Result.SUCCESS, topic=topic.name,
            epoch=topic.epoch, seq=topic.seq, values=values))

