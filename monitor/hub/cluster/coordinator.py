"""Several nodes on one Redis: the state proposes, Redis decides, every node follows the log.

:class:`RedisCoordinator` is the :class:`~monitor.hub.state.Coordinator` of a node of many:
where one node would change shared state at once, it returns proposals instead
(:mod:`monitor.hub.cluster.ops`), and the state changes when the log says so
(:meth:`RedisCoordinator.apply`). Connections stay local: sessions, subscriptions and
replies are this node's business.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monitor.hub.cluster.ops import (
    Change,
    Connect,
    Disconnect,
    Expire,
    Guarded,
    Introduce,
    Kick,
    Notify,
)
from monitor.hub.state import (
    CallRow,
    Effects,
    HubState,
    LoginHold,
    Send,
    Session,
    User,
    new_epoch,
)
from monitor.protocol import (
    ALL_CALL_STATUS,
    CALL,
    ONLINE_STATUS,
    Service,
    encode,
    from_json,
    to_json,
)
from monitor.tokens import Grants


class RedisCoordinator:
    """The decisions of a node of many, and how it applies the log to its state."""

    def __init__(self) -> None:
        # Each project's epoch, read from Redis at start: every node numbers alike.
        self.epochs: dict[int, str] = {}
        # The messages of topics no connection of this node subscribes to, as the log
        # gave them (seq, then HubState.message's arguments): their frames are made only
        # when a connection subscribes here (see attach), if ever.
        self._unframed: dict[tuple[int, str], deque[tuple[int, tuple[Any, ...]]]] = {}

    # -- the Coordinator protocol ---------------------------------------------------------

    def topic_epoch(self, project_id: int) -> str:
        return self.epochs.get(project_id) or new_epoch()

    def set_value(self, state: HubState, user: User, name: str, new: Any, now_ms: int,
                  extra: Mapping[str, Any] | None, always: bool,
                  grants: Grants | None) -> Effects:
        # Presence is proposed by connections coming and going (Connect, Disconnect...).
        if name == ONLINE_STATUS:
            return Effects()
        return Effects(ops=[Change(user.project_id, user.user_id, name, new, now_ms,
                                   dict(extra) if extra else None, always,
                                   None if grants is None else grants.topics_for(name))])

    def attach(self, state: HubState, session: Session, body: dict[str, Any],
               resume: object, effects: Effects) -> None:
        """The reply, the resumed messages and the subscriptions wait until the login is
        in the log and this node has read it: the reply's seqs then count every message
        sent before it, and none is missed or sent twice, whichever node the client was
        on before. Its ``clients`` then add the user's connections on other nodes."""
        connect = connect_op(session, body["loginTime"])

        def attach() -> list[Send]:
            if state.sessions.get(session.handle) is not session:
                return []  # gone while the login was being stored
            body["clients"] = [*body["clients"], *map(from_json, connect.others)]
            for name in session.grants.subscribe:  # its history, for resume and after
                self._frame_history(state, session.user.project_id, name)
            return state.attach(session, body, resume)

        effects.ops.append(connect)
        effects.then.append(attach)

    def detach(self, state: HubState, session: Session, effects: Effects, now_ms: int,
               immediate: bool) -> None:
        effects.ops.append(Disconnect(session.user.project_id, session.user.user_id,
                                      session.connection_id, now_ms,
                                      0 if immediate else max(state.offline_grace_ms, 0)))

    def introduce(self, state: HubState, user: User, now_ms: int) -> Effects:
        # The user may have connected on another node meanwhile: Redis knows.
        return Effects(ops=[Introduce(user.project_id, user.user_id, now_ms)])

    def grace_ran_out(self, state: HubState, user: User, now_ms: int) -> Effects:
        # Redis decides: the user may hold a connection on another node.
        return Effects(ops=[Expire(user.project_id, user.user_id, now_ms)])

    def notify(self, state: HubState, effects: Effects, project_id: int,
               user_ids: Sequence[str], frame: Callable[[], str], skip: str = "",
               if_others: bool = False) -> None:
        # The users' connections may be on any node: every node tells its own, through
        # the log, in log order with the topic messages.
        effects.ops.append(Notify(project_id, tuple(user_ids), frame(), skip=skip,
                                  if_others=if_others))

    def reachable(self, user: User) -> bool:
        return user.online  # connected on any node, not only on this one

    def log_out(self, state: HubState, effects: Effects, user: User, hold: LoginHold) -> None:
        # Every node (this one too) holds the user's logins and closes its connections
        # when the log brings the kick, after the notice before it.
        effects.ops.append(Kick(user.project_id, user.user_id, hold.until_ms, hold.by,
                                hold.reason))

    def guard(self, effects: Effects) -> Effects:
        # Redis checks each call's status first (scripts.BATCH, kind G): the later of two
        # nodes changing one call is refused, ops and event log entries alike.
        checks: dict[str, str] = {}
        project_id = 0
        for op in effects.ops:
            if isinstance(op, CallRow) and op.expected is not None:
                checks.setdefault(op.call_id, op.expected)
                project_id = op.project_id
        if checks:
            effects.ops = [Guarded(project_id, tuple(checks.items()),
                                   (*effects.ops, *effects.log))]
            effects.log = []
        return effects

    @property
    def presence_is_local(self) -> bool:
        return False  # the user may hold connections on other nodes: Redis says (``g``)

    # -- the log ------------------------------------------------------------------------

    def apply(self, state: HubState, project_id: int, fields: Mapping[str, str],
              live: bool = True) -> list[Send]:
        """Apply one log entry of kind ``a`` (attribute) or ``l`` (login); the topic
        messages for this node's subscribers (none unless ``live``)."""
        kind = fields.get("k")
        if kind == "a":
            return self._apply_change(state, project_id, fields, live)
        if kind == "l":
            user = state.user_or_new(project_id, fields["u"])
            if fields.get("d"):
                user.display_name = fields["d"]
            if fields.get("l"):
                user.login_time = int(fields["l"])
            state.set_grants(user, Grants.from_json(from_json(fields["g"])))
        return []

    def _apply_change(self, state: HubState, project_id: int, fields: Mapping[str, str],
                      live: bool) -> list[Send]:
        # Every node runs this for every change of its projects: keep it lean.
        user_id = fields["u"]
        user = state.users.get((project_id, user_id)) or state.user_or_new(project_id,
                                                                           user_id)
        name, value, ts = fields["n"], from_json(fields["v"]), int(fields["t"])
        extra_text = fields.get("x")
        extra = from_json(extra_text) if extra_text else None
        if live:
            state.restore_value(user, name, value, ts, extra)
        elif name == CALL:
            state.topic(project_id, ALL_CALL_STATUS).publishers.add((user_id, CALL))
        numbers = fields.get("s", "").split()
        sends: list[Send] = []
        message: dict[str, Any] | None = None
        for i in range(0, len(numbers) - 1, 2):
            name_, seq = numbers[i], int(numbers[i + 1])
            topic = state.topic(project_id, name_)
            if seq <= topic.seq:
                continue  # read before (a resync)
            if live and not topic.subscribers:
                # No connection here needs its frame now: keep what makes it.
                topic.seq = seq
                key = (project_id, name_)
                unframed = self._unframed.get(key)
                if unframed is None:
                    unframed = self._unframed[key] = deque(maxlen=state.history_size)
                unframed.append((seq, (user_id, name, fields["o"], value, ts,
                                       fields.get("e") == "1", fields.get("d") or None,
                                       extra)))
                continue
            if (project_id, name_) in self._unframed:
                self._frame_history(state, project_id, name_)
            if message is None:
                message = self._message(state, project_id, user_id, name, fields["o"],
                                        value, ts, fields.get("e") == "1",
                                        fields.get("d") or None, extra)
            sends += state.publish_message(project_id, message, [(name_, seq)])
        return sends if live else []

    @staticmethod
    def _message(state: HubState, project_id: int, user_id: str, name: str, old: str,
                 value: Any, ts: int, ended: bool, shown: str | None,
                 extra: Mapping[str, Any] | None) -> dict[str, Any]:
        return state.message(project_id, user_id, name, from_json(old), value, ts, ended,
                             shown, extra)

    def _frame_history(self, state: HubState, project_id: int, name: str) -> None:
        """Make the frames of a topic's messages kept unframed, into its history (they
        follow what it holds: frames are made eagerly only while it has subscribers)."""
        unframed = self._unframed.pop((project_id, name), None)
        if not unframed:
            return
        topic = state.topic(project_id, name)
        for seq, args in unframed:
            message = self._message(state, project_id, *args)
            topic.history.append((seq, encode(Service.SUBSCRIBE_FROM_SERVER, {
                "topic": topic.name, "seq": seq, "message": message})))

    def load_user_fields(self, state: HubState, project_id: int, user_id: str,
                         fields: Mapping[str, str]) -> User:
        """Restore a user from its Redis hash (``u:USER``)."""
        user = state.user_or_new(project_id, user_id)
        if fields.get("dn"):
            user.display_name = fields["dn"]
        user.login_time = int(fields["lt"]) if fields.get("lt") else None
        if "g" in fields:
            state.set_grants(user, Grants.from_json(from_json(fields["g"])))
        if fields.get("ho"):  # a supervisor's logout: [until ms, by, reason]
            until, by, reason = json.loads(fields["ho"])
            user.hold = LoginHold(int(until), str(by), str(reason))
        user.attributes.clear()
        for key, text in fields.items():
            if key.startswith("a:"):
                name = key[2:]
                state.restore_value(user, name, json.loads(text),
                                    int(fields.get("t:" + name, 0)))
        return user

    def reset_topics(self, state: HubState, project_id: int, epoch: str,
                     seqs: Mapping[str, int]) -> None:
        """Start the project's topics over at the log's point: ``epoch``, ``seqs`` and an
        empty history (subscribers and publishers stay)."""
        self.epochs[project_id] = epoch
        for key in [key for key in self._unframed if key[0] == project_id]:
            del self._unframed[key]
        for (pid, _), topic in state.topics.items():
            if pid == project_id:
                topic.epoch = epoch
                topic.seq = 0
                topic.history.clear()
        for name in seqs:
            state.topic(project_id, name)
        for (pid, name), topic in state.topics.items():
            if pid == project_id:
                topic.seq = seqs.get(name, 0)

    def load_history(self, state: HubState, project_id: int,
                     entries: Sequence[Mapping[str, str]], seqs: Mapping[str, int]) -> None:
        """Rebuild topic histories from the log's latest entries (oldest first), up to
        the point ``seqs`` was read at, so resume works on a node that just started."""
        for name in seqs:
            state.topic(project_id, name).seq = 0
        for fields in entries:
            if fields.get("k") == "a":
                self.apply(state, project_id, fields, live=False)
        for name, seq in seqs.items():
            topic = state.topic(project_id, name)
            topic.seq = seq
            # Only an unbroken run up to seq counts: drop what comes before a gap.
            expected = seq
            run: list[tuple[int, str]] = []
            for s, frame in reversed(topic.history):
                if s != expected:
                    break
                run.append((s, frame))
                expected -= 1
            topic.history.clear()
            topic.history.extend(reversed(run))


def connect_op(session: Session, now_ms: int) -> Connect:
    """The proposal that ``session``'s connection holds its user online, on this node."""
    user = session.user
    return Connect(user.project_id, user.user_id, session.connection_id, now_ms,
                   to_json(session.client))
