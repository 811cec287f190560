"""Per-topic sequence tracking: drop duplicates, detect gaps, hold messages during a resync.

Pure (no sockets, no clocks), in the spirit of the hub's own state machine: the
:class:`~monitor.client.HubClient` feeds it frames and acts on what it answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Verdict(Enum):
    """What to do with one topic message."""

    DELIVER = "deliver"        #: next in sequence (or untracked): hand it to the application
    DUPLICATE = "duplicate"    #: seq already delivered: drop it
    HELD = "held"              #: the topic is resyncing: kept until the snapshot arrives
    GAP = "gap"                #: seq jumped: the topic must resync; the message is held


@dataclass(frozen=True)
class TopicPosition:
    """Where a topic's stream stands: the hub's ``epoch`` and the last ``seq`` delivered."""

    epoch: str | None
    seq: int | None


@dataclass
class _Topic:
    epoch: str | None = None
    seq: int | None = None
    resyncing: bool = False
    held: list[dict[str, Any]] = field(default_factory=list)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class TopicTracker:
    """The position of every subscribed topic, and the resyncs under way."""

    def __init__(self) -> None:
        self._topics: dict[str, _Topic] = {}

    def positions(self) -> dict[str, TopicPosition]:
        """Every known topic's position."""
        return {name: TopicPosition(t.epoch, t.seq) for name, t in self._topics.items()}

    def position(self, topic: str) -> TopicPosition | None:
        """One topic's position, ``None`` when the topic is unknown."""
        t = self._topics.get(topic)
        return TopicPosition(t.epoch, t.seq) if t else None

    def resyncing(self, topic: str) -> bool:
        """True while ``topic`` waits for its snapshot."""
        t = self._topics.get(topic)
        return bool(t and t.resyncing)

    def resume_request(self) -> dict[str, dict[str, Any]]:
        """The AUTHEN ``resume`` object: every topic whose epoch and seq are known."""
        return {name: {"epoch": t.epoch, "seq": t.seq} for name, t in self._topics.items()
                if t.epoch is not None and t.seq is not None}

    def on_authen(self, reply: Mapping[str, Any],
                  resumed: Iterable[str] = ()) -> list[str]:
        """Take a successful AUTHEN reply; return the topics that must resync.

        ``resumed`` are the topics the AUTHEN request asked to resume. A topic resyncs
        when a position was held for it and the hub neither replays the missed messages
        (``recovered``) nor reports the very same position.
        """
        resumed = set(resumed)
        info = reply.get("topics")
        info = info if isinstance(info, Mapping) else {}
        recovered = reply.get("recovered")
        recovered = recovered if isinstance(recovered, Mapping) else {}
        subscribe = reply.get("subscribe")
        if isinstance(subscribe, list):
            names = [t for t in subscribe if isinstance(t, str)]
            for gone in set(self._topics) - set(names) - set(info):
                del self._topics[gone]
        else:
            names = list(self._topics)
        names += [t for t in info if t not in names]
        must_resync = []
        for name in names:
            pos = info.get(name)
            pos = pos if isinstance(pos, Mapping) else {}
            epoch, seq = _str(pos.get("epoch")), _int(pos.get("seq"))
            t = self._topics.get(name)
            if t is None or t.seq is None:
                self._topics[name] = _Topic(epoch, seq)
                continue
            t.resyncing, t.held = False, []
            if name in resumed and recovered.get(name) is True:
                continue  # the hub replays seq+1.. right after the reply
            if seq is not None and epoch == t.epoch and seq == t.seq:
                continue  # nothing was published meanwhile
            t.resyncing = True
            must_resync.append(name)
        return must_resync

    def on_message(self, body: Mapping[str, Any]) -> Verdict:
        """Take one SUBSCRIBE_FROM_SERVER body."""
        topic, seq = _str(body.get("topic")), _int(body.get("seq"))
        if topic is None or seq is None:
            return Verdict.DELIVER  # nothing to track it by
        t = self._topics.setdefault(topic, _Topic())
        if t.resyncing:
            t.held.append(dict(body))
            return Verdict.HELD
        if t.seq is None or seq == t.seq + 1:
            t.seq = seq
            return Verdict.DELIVER
        if seq <= t.seq:
            return Verdict.DUPLICATE
        t.resyncing = True
        t.held.append(dict(body))
        return Verdict.GAP

    def resync_done(self, topic: str,
                    snapshot: Mapping[str, Any] | None) -> tuple[list[dict[str, Any]], bool]:
        """End ``topic``'s resync with its snapshot (``None`` if it could not be read).

        Return the held messages newer than the snapshot, in order, and whether they
        show yet another gap (the topic then resyncs again and keeps the rest held).
        """
        t = self._topics.get(topic)
        if t is None or not t.resyncing:
            return [], False
        held, t.held, t.resyncing = t.held, [], False
        if snapshot is None:
            t.seq = None  # no baseline: the next message starts one
        else:
            t.epoch = _str(snapshot.get("epoch")) or t.epoch
            t.seq = _int(snapshot.get("seq"))
        deliver = []
        for i, body in enumerate(held):
            verdict = self.on_message(body)
            if verdict is Verdict.DELIVER:
                deliver.append(body)
            elif verdict is Verdict.GAP:
                t.held.extend(held[i + 1:])
                return deliver, True
        return deliver, False

    def on_snapshot(self, topic: str, snapshot: Mapping[str, Any]) -> None:
        """Take a snapshot the application asked for: it is a position too."""
        t = self._topics.setdefault(topic, _Topic())
        seq, epoch = _int(snapshot.get("seq")), _str(snapshot.get("epoch"))
        if t.resyncing or seq is None:
            return
        if epoch is not None and epoch != t.epoch:
            t.epoch, t.seq = epoch, seq
        else:
            t.seq = seq if t.seq is None else max(t.seq, seq)

    def connection_lost(self) -> None:
        """Forget held messages and unfinished resyncs; the next AUTHEN resumes from
        the last delivered position, which may recover what they were about."""
        for t in self._topics.values():
            t.resyncing, t.held = False, []
