"""Supervisor actions in the monitor, and logging in again after a supervisor's logout.

On the grid, a supervisor whose token carries the ``supervise`` claim sets the status of
the agent under the cursor (``S``) or logs that agent out (``L``: a confirmation, with a
reason picked or typed). The keys are there only with such a token and a feed that can
act. The hub's answer (``r``) shows in the status line and the event log; the hub
decides who may act on whom (``r = 24`` otherwise).

An agent whom a supervisor logged out sees why on the connection line, and the monitor
does not reconnect until the operator asks (``R``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from monitor.tui.feed import OFFLINE, ChangeRefused, Feed, Link, Session
from monitor.tui.model import AgentTable, Change
from monitor.tui.screens import MODAL_CSS, StatusPicker
from monitor.tui.settings import Settings
from monitor.tui.text import safe_text
from monitor.tui.widgets import AgentGrid

SET_STATUS = "supervise_status"
LOG_OUT = "supervise_logout"
LOG_IN_AGAIN = "log_in_again"
SUPERVISOR_ACTIONS = frozenset({SET_STATUS, LOG_OUT, LOG_IN_AGAIN})
LOGOUT_REASONS = ("End of shift", "Break over time", "Left without logging out",
                  "Asked to by the agent")
ACTION_TOPIC = "action"
"""Where the event log says a supervisor's action came from."""


@runtime_checkable
class SupervisorFeed(Protocol):
    """A feed that can act on other users (``HubFeed``: through the hub's services
    1020 and 1021). Both raise :class:`~monitor.tui.feed.ChangeRefused` with the hub's
    ``r``."""

    async def set_user_attribute(self, user_id: str, name: str, value: Any,
                                 reason: str | None = None) -> None: ...

    async def log_out_user(self, user_id: str, reason: str) -> None: ...


@runtime_checkable
class ReconnectableFeed(Protocol):
    """A feed that stopped (a supervisor's logout) and can start again when asked."""

    def reconnect(self) -> None: ...


class AgentStatusPicker(StatusPicker):
    """The status picker, for another agent."""

    def __init__(self, agent: str, statuses: list[str], current: str | None,
                 label: Any = str) -> None:
        super().__init__(statuses, current, label)
        self.agent = agent

    def on_mount(self) -> None:
        self.query_one(".title", Static).update(Text(f"Set the status of {self.agent}"))


class LogoutConfirm(ModalScreen[str | None]):
    """Confirm logging an agent out: pick a reason, or type one; answers it or ``None``."""

    DEFAULT_CSS = MODAL_CSS.format(name="LogoutConfirm") + """
    LogoutConfirm > Vertical { width: 60; }
    LogoutConfirm OptionList { height: auto; max-height: 8; border: none; }
    LogoutConfirm Input { margin: 1 0 0 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_none", "Cancel")]

    def __init__(self, agent: str, reasons: tuple[str, ...] = LOGOUT_REASONS) -> None:
        super().__init__()
        self.agent = agent
        self.reasons = reasons

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Log out {self.agent}?"), classes="title")
            yield Static("Their connections close, and they may not log in again for a "
                         "while (the hub's logout_hold_ms). Why?", classes="hint")
            yield OptionList(*(Option(Text(r)) for r in self.reasons), markup=False)
            yield Input(placeholder="or type a reason and press Enter", id="reason",
                        max_length=256)
            yield Static("Enter logs out · Tab moves · Esc cancels", classes="hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.reasons[event.option_index])

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or self.reasons[0])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


class SupervisorActions(App[None]):
    """What the monitor app adds for supervisors; the app provides the attributes below
    and :meth:`show_answer` (its status line)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("S", SET_STATUS, "Agent's status"),
        Binding("L", LOG_OUT, "Log agent out"),
        Binding("R", LOG_IN_AGAIN, "Log in again"),
    ]

    feed: Feed
    session: Session | None
    link: Link
    model: AgentTable
    settings: Settings
    clock: Callable[[], float]

    def show_answer(self, what: str, ok: bool | None, text: str) -> None:
        """Put the hub's answer to an action in the status line."""
        raise NotImplementedError

    def supervisor_check(self, action: str) -> bool:
        """Whether one of :data:`SUPERVISOR_ACTIONS` is offered now."""
        if action == LOG_IN_AGAIN:
            return self.link.state == OFFLINE and isinstance(self.feed, ReconnectableFeed)
        session = self.session
        return (session is not None and bool(session.supervise)
                and isinstance(self.feed, SupervisorFeed)
                and self.screen is self.screen_stack[0]
                and not self.screen.has_class("-compact"))

    def _target(self) -> tuple[str, str] | None:
        """The agent under the cursor: user id and how it reads."""
        user_id = self.query_one(AgentGrid).selected_user
        if user_id is None:
            self.notify("Put the cursor on an agent first.", title="No agent",
                        severity="warning")
            return None
        return user_id, safe_text(self.model.party_label(user_id) or user_id)

    def action_supervise_status(self) -> None:
        target = self._target()
        if target is None:
            return
        user_id, label = target
        agent = self.model.agents.get(user_id)
        current = agent.values.get(self.settings.status_attribute) if agent else None

        def chosen(status: str | None) -> None:
            if status is not None:
                self.run_worker(self._set_status(user_id, label, status), group="supervise")

        self.push_screen(AgentStatusPicker(label, list(self.settings.statuses),
                                           current if isinstance(current, str) else None,
                                           self.model.status_label), chosen)

    def action_supervise_logout(self) -> None:
        target = self._target()
        if target is None:
            return
        user_id, label = target

        def confirmed(reason: str | None) -> None:
            if reason is not None:
                self.run_worker(self._log_out(user_id, label, reason), group="supervise")

        self.push_screen(LogoutConfirm(label), confirmed)

    def action_log_in_again(self) -> None:
        feed = self.feed
        if isinstance(feed, ReconnectableFeed):
            feed.reconnect()

    async def _set_status(self, user_id: str, label: str, status: str) -> None:
        feed = self.feed
        assert isinstance(feed, SupervisorFeed)
        name = self.settings.status_attribute
        what = f"{label} → {self.model.status_label(status)}"
        self.show_answer(what, None, "sending")
        try:
            await feed.set_user_attribute(user_id, name, status)
        except ChangeRefused as exc:
            self._answered(user_id, what, f"you set {name}", status, exc)
        else:
            self._answered(user_id, what, f"you set {name}", status, None)

    async def _log_out(self, user_id: str, label: str, reason: str) -> None:
        feed = self.feed
        assert isinstance(feed, SupervisorFeed)
        what = f"log out {label}"
        self.show_answer(what, None, "sending")
        try:
            await feed.log_out_user(user_id, reason)
        except ChangeRefused as exc:
            self._answered(user_id, what, "you logged out", reason, exc)
        else:
            self._answered(user_id, what, "you logged out", reason, None)

    def _answered(self, user_id: str, what: str, action: str, value: str,
                  refused: ChangeRefused | None) -> None:
        """The hub's answer in the status line (and a toast when refused) and in the
        event log; the hub's words made safe to draw."""
        if refused is None:
            self.show_answer(what, True, f"{what} (r=0)")
            outcome = "r=0"
        else:
            text = safe_text(str(refused))
            self.show_answer(what, False, f"{what}: {text}")
            self.notify(f"{what}: {text}", title="Refused by the hub", severity="error",
                        markup=False)
            outcome = text if refused.r is not None else f"no answer: {text}"
        model = self.model
        model.events.append(Change(self.clock(), user_id, action, None,
                                   f"{safe_text(value)} ({outcome})", ACTION_TOPIC))
        model.version += 1
