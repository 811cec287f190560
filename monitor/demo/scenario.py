"""The demo's contact centre: teams, agents, and how long things take. Pure and seeded.

Durations are in simulated seconds; the runner divides them by ``--speed``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

TEAMS = ("sales", "support", "billing", "retention")
FIRST_NAMES = ("Ana", "Bao", "Chloé", "Dmitri", "Eitan", "Fatima", "Giulia", "Hiro", "Ines",
               "Jonas", "Kemi", "Luca", "Maya", "Nils", "Olu", "Priya", "Quinn", "Rosa",
               "Sami", "Tariq", "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe")
LAST_NAMES = ("Almeida", "Berg", "Castro", "Dang", "Eze", "Fischer", "García", "Haddad",
              "Ito", "Jensen", "Kowalski", "Lind", "Moreau", "Nakamura", "Okafor", "Park",
              "Quispe", "Rossi", "Sato", "Tran", "Ueda", "Varga", "Weber", "Yilmaz")

AVAILABLE = "available"
AFTER_CALL_WORK = "after_call_work"
#: What an available agent goes off to do, how often (weights) and for how long (mean s).
BREAKS = {"break": (6, 600.0), "lunch": (1, 1800.0), "training": (1, 1200.0)}
STATUSES = (AVAILABLE, "break", "lunch", AFTER_CALL_WORK, "training")

SUPERVISOR_ID = "supervisor"
CALL_TOPIC = "ALL_CALL_STATUS"
TEAM_ATTRIBUTE = "team"
OPENINGS = (("talking", 50), ("ringing", 10), ("after_call", 12), ("break", 13),
            ("available", 15))
"""What an agent at work when the demo starts is doing, and how often: the floor is a
contact centre in full swing from the first second, not one opening its doors."""


def team_topic(team: str) -> str:
    return f"team_{team}"


@dataclass(frozen=True)
class AgentProfile:
    """One simulated agent."""

    user_id: str
    display_name: str
    team: str
    shift_start_s: float  # when the agent logs in, from the demo's start
    shift_length_s: float
    flaky: bool  # drops its connection now and then
    opening: str = "available"
    """What the agent is doing when the demo starts (one of :data:`OPENINGS`)."""
    opening_s: float = 0.0
    """For how much longer (simulated seconds)."""


def make_agents(count: int, rng: random.Random) -> list[AgentProfile]:
    """``count`` agents spread over the teams; most are at work from the start, each
    already doing something (:data:`OPENINGS`)."""
    agents = []
    timing = Timing(rng)
    names = [name for name, _ in OPENINGS]
    weights = [weight for _, weight in OPENINGS]
    for i in range(count):
        team = TEAMS[i % len(TEAMS)]
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        # Four in five are already logged in; the rest arrive over the first minutes.
        start = 0.0 if rng.random() < 0.8 else rng.uniform(30, 600)
        opening = rng.choices(names, weights)[0] if start == 0 else "available"
        left = {"talking": lambda: rng.uniform(0.1, 1.0) * timing.talk(),
                "ringing": lambda: rng.uniform(3.0, 30.0),
                "after_call": lambda: rng.uniform(0.1, 1.0) * timing.after_call_work(),
                "break": lambda: rng.uniform(30.0, 400.0),
                "available": lambda: 0.0}[opening]()
        agents.append(AgentProfile(f"agent_{i + 1:03d}", name, team, start,
                                   rng.uniform(3, 8) * 3600, rng.random() < 0.15,
                                   opening, left))
    # One customer has been waiting a while already: their call rings on past the
    # monitor's default 20 s limit, so an alert fires within the first half minute.
    waiting = next((i for i, a in enumerate(agents) if a.opening == "ringing"), None)
    if waiting is not None:
        agents[waiting] = replace(agents[waiting], opening_s=rng.uniform(24.0, 32.0))
    return agents


class Timing:
    """Random durations from plausible distributions (seconds, simulated time)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _lognormal(self, median: float, spread: float) -> float:
        return median * math.exp(self.rng.gauss(0, spread))

    def ring(self) -> float:
        """How long a phone rings before someone picks up: mostly a few seconds; one
        call in five waits while the agent finishes something (15-40 s)."""
        if self.rng.random() < 0.2:
            return self.rng.uniform(15.0, 40.0)
        return min(self._lognormal(6.0, 0.5), 40.0)

    def patience(self) -> float:
        """How long a customer waits for an answer before hanging up (abandoning)."""
        return min(self._lognormal(35.0, 0.5), 120.0)

    def talk(self) -> float:
        """How long a conversation lasts (median 3 minutes, long tail)."""
        return min(self._lognormal(180.0, 0.7), 1800.0)

    def after_call_work(self) -> float:
        return min(self._lognormal(45.0, 0.6), 600.0)

    def idle_before_break(self) -> float:
        """How long an available agent stays so before taking a break (if no call comes)."""
        return self.rng.expovariate(1 / 900.0)

    def pick_break(self) -> tuple[str, float]:
        names = list(BREAKS)
        weights = [BREAKS[n][0] for n in names]
        name = self.rng.choices(names, weights)[0]
        return name, self.rng.uniform(0.5, 1.5) * BREAKS[name][1]

    def inbound_gap(self, agents_online: int) -> float:
        """Time to the next customer call: each online agent draws one every ~4 minutes."""
        return self.rng.expovariate(max(agents_online, 1) / 240.0)

    def internal_call_gap(self) -> float:
        """Time between an agent's calls to a colleague (rare)."""
        return self.rng.expovariate(1 / 1800.0)

    def network_drop_gap(self) -> float:
        """Time between drops of a flaky agent's connection."""
        return self.rng.expovariate(1 / 600.0)

    def answers(self) -> bool:
        """Whether a ringing agent picks up (the rest are missed calls)."""
        return self.rng.random() < 0.93
