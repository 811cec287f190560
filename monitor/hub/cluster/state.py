"""A node's view of a multi-node hub: the same state machine, fed by the log.

Request handlers call the state as on one node; here the calls that would change shared
state return proposals instead (:mod:`monitor.hub.cluster.ops`), and the state changes
when the log says so (:meth:`ClusterState.apply`). Connections stay local: sessions,
subscriptions and replies are this node's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from monitor.hub.cluster.ops import Change, Connect, Disconnect, Expire, Notify
from monitor.hub.state import (
    Attribute,
    AuthOutcome,
    Effects,
    Handle,
    HubState,
    Send,
    Session,
    Topic,
    User,
)
from monitor.protocol import ALL_CALL_STATUS, CALL, ONLINE_STATUS, Service, encode
from monitor.tokens import ClientClaims, Grants


class ClusterState(HubState):
    """:class:`HubState` whose shared changes are decided by Redis."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epochs: dict[int, str] = {}

    def _topic(self, project_id: int, name: str) -> Topic:
        topic = self.topics.get((project_id, name))
        if topic is None:
            topic = super()._topic(project_id, name)
            topic.epoch = self.epochs.get(project_id, topic.epoch)
        return topic

    # -- proposals ----------------------------------------------------------------------

    def _set_value(self, user: User, name: str, new: Any, now_ms: int,
                   extra: Mapping[str, Any] | None = None, always: bool = False,
                   grants: Grants | None = None) -> Effects:
        # Presence is proposed by connections coming and going (Connect, Disconnect...).
        if name == ONLINE_STATUS:
            return Effects()
        return Effects(ops=[Change(user.project_id, user.user_id, name, new, now_ms,
                                   dict(extra) if extra else None, always,
                                   None if grants is None else grants.topics_for(name))])

    def authenticate(self, handle: Handle, project_id: int, claims: ClientClaims,
                     client: dict[str, Any], request_id: Any, now_ms: int,
                     resume: object = None) -> AuthOutcome:
        """As on one node, except that the reply, the resumed messages and the
        subscriptions wait until the login is in the log and this node has read it:
        the reply's seqs then count every message sent before it, and none is missed
        or sent twice, whichever node the client was on before."""
        outcome = super().authenticate(handle, project_id, claims, client, request_id, now_ms)
        session, effects = outcome.session, outcome.effects
        _, reply_frame = effects.sends.pop(0)
        for name in claims.grants.subscribe:
            self._topic(project_id, name).subscribers.discard(handle)

        def attach() -> list[Send]:
            return self._attach(session, reply_frame, resume)

        effects.ops.append(Connect(project_id, claims.user_id, session.connection_id,
                                   now_ms, attach))
        return outcome

    def _attach(self, session: Session, reply_frame: str, resume: object) -> list[Send]:
        handle = session.handle
        if self.sessions.get(handle) is not session:
            return []  # gone while the login was being stored
        project_id = session.user.project_id
        body = json.loads(reply_frame)["body"]
        topics: dict[str, dict[str, Any]] = {}
        for name in session.grants.subscribe:
            topic = self._topic(project_id, name)
            topic.subscribers.add(handle)
            topics[name] = {"epoch": topic.epoch, "seq": topic.seq}
        body["topics"] = topics
        frames: list[str] = []
        if isinstance(resume, dict):
            body["recovered"], frames = self._resume(session, resume)
        return [((handle,), encode(Service.AUTHEN, body))] + [((handle,), f) for f in frames]

    def disconnect(self, handle: Handle, now_ms: int, immediate: bool = False) -> Effects:
        session = self.sessions.get(handle)
        effects = super().disconnect(handle, now_ms, immediate)
        if session is not None:
            effects.ops.append(Disconnect(session.user.project_id, session.user.user_id,
                                          session.connection_id, now_ms,
                                          0 if immediate else max(self.offline_grace_ms, 0)))
        return effects

    def _tell_other_devices(self, effects: Effects, others: list[Handle], session: Session,
                            status: str) -> None:
        # The user's other devices may be on any node: every node tells its own, through
        # the log, once the login (or logout) is in it.
        effects.ops.append(Notify(session.user.project_id, (session.user.user_id,),
                                  self._other_device_frame(session.user, session, status),
                                  skip=session.connection_id, if_others=True))

    def _grace_ran_out(self, user: User, now_ms: int) -> Effects:
        # Redis decides: the user may hold a connection on another node.
        return Effects(ops=[Expire(user.project_id, user.user_id, now_ms)])

    # -- the log ------------------------------------------------------------------------

    def apply(self, project_id: int, fields: Mapping[str, str], live: bool = True
              ) -> list[Send]:
        """Apply one log entry of kind ``a`` (attribute) or ``l`` (login); the topic
        messages for this node's subscribers (none unless ``live``)."""
        kind = fields.get("k")
        if kind == "l":
            user = self._user(project_id, fields["u"])
            if fields.get("d"):
                user.display_name = fields["d"]
            user.login_time = int(fields["l"])
            self._set_grants(user, Grants.from_json(json.loads(fields["g"])))
            return []
        if kind != "a":
            return []
        user = self._user(project_id, fields["u"])
        name, value, ts = fields["n"], json.loads(fields["v"]), int(fields["t"])
        if live:
            user.attributes[name] = Attribute(value, ts)
        if name == CALL:
            self._topic(project_id, ALL_CALL_STATUS).publishers.add((user.user_id, CALL))
        numbers = fields.get("s", "").split()
        topics: list[tuple[str, int | None]] = []
        for i in range(0, len(numbers) - 1, 2):
            topic, seq = numbers[i], int(numbers[i + 1])
            if seq > self._topic(project_id, topic).seq:  # not read before (a resync)
                topics.append((topic, seq))
        if not topics:
            return []
        message = self.message(project_id, user.user_id, name, json.loads(fields["o"]),
                               value, ts, fields.get("e") == "1", fields.get("d") or None,
                               json.loads(fields["x"]) if fields.get("x") else None)
        sends = self.publish_message(project_id, message, topics)
        return sends if live else []

    def load_user_fields(self, project_id: int, user_id: str, fields: Mapping[str, str]
                         ) -> User:
        """Restore a user from its Redis hash (``u:USER``)."""
        user = self._user(project_id, user_id)
        if fields.get("dn"):
            user.display_name = fields["dn"]
        user.login_time = int(fields["lt"]) if fields.get("lt") else None
        if "g" in fields:
            self._set_grants(user, Grants.from_json(json.loads(fields["g"])))
        attributes: dict[str, Attribute] = {}
        for key, text in fields.items():
            if key.startswith("a:"):
                name = key[2:]
                attributes[name] = Attribute(json.loads(text), int(fields.get("t:" + name, 0)))
                if name == CALL:
                    self._topic(project_id, ALL_CALL_STATUS).publishers.add((user_id, CALL))
        user.attributes = attributes
        return user

    def reset_topics(self, project_id: int, epoch: str, seqs: Mapping[str, int]) -> None:
        """Start the project's topics over at the log's point: ``epoch``, ``seqs`` and an
        empty history (subscribers and publishers stay)."""
        self.epochs[project_id] = epoch
        for (pid, _), topic in self.topics.items():
            if pid == project_id:
                topic.epoch = epoch
                topic.seq = 0
                topic.history.clear()
        for name in seqs:
            self._topic(project_id, name)
        for (pid, name), topic in self.topics.items():
            if pid == project_id:
                topic.seq = seqs.get(name, 0)

    def load_history(self, project_id: int, entries: list[Mapping[str, str]],
                     seqs: Mapping[str, int]) -> None:
        """Rebuild topic histories from the log's latest entries (oldest first), up to
        the point ``seqs`` was read at, so resume works on a node that just started."""
        for name in seqs:
            self._topic(project_id, name).seq = 0
        for fields in entries:
            if fields.get("k") == "a":
                self.apply(project_id, fields, live=False)
        for name, seq in seqs.items():
            topic = self._topic(project_id, name)
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
