"""What an endpoint is sent, how it is signed, when it is retried, and in what order
(monitor.hub.webhooks), and the [[projects.webhooks]] tables (monitor.config)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from monitor.config import (
    Config,
    ConfigError,
    HubSettings,
    Project,
    Webhook,
    check_webhooks,
    load_config,
    new_webhook_secret,
    webhook_secret_bytes,
)
from monitor.hub.webhooks import (
    Lanes,
    backoff_ms,
    headers,
    next_wait_ms,
    order_keys,
    outcome_of,
    payload,
    retry_after_ms,
    wanted,
)


def test_signatures_verify_with_standardwebhooks() -> None:
    secret = new_webhook_secret()
    assert webhook_secret_bytes(secret) is not None
    body = payload(7, {"type": "attribute.changed", "userId": "u", "attribute": "a",
                       "value": "é", "oldValue": None, "timestamp": 1, "topics": []})
    import time
    sent = headers(secret, "msg_7_1", int(time.time()), body)
    assert sent["webhook-signature"].startswith("v1,")
    assert Verifier(secret).verify(body, sent)["projectId"] == 7
    with pytest.raises(WebhookVerificationError):
        Verifier(new_webhook_secret()).verify(body, sent)
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body + b" ", sent)


def test_the_payload_puts_type_and_project_first() -> None:
    event = {"type": "call.state", "timestamp": 5, "call": {"callId": "c"}}
    assert json.loads(payload(3, event)) == {"type": "call.state", "projectId": 3,
                                             "timestamp": 5, "call": {"callId": "c"}}


def test_outcomes() -> None:
    assert [outcome_of(s) for s in (200, 204, 301, 400, 404, 408, 429, 500, 503)] == [
        "delivered", "delivered", "retry", "final", "final", "retry", "retry", "retry",
        "retry"]


def test_retry_after_and_backoff() -> None:
    assert retry_after_ms("3", 0) == 3000
    assert retry_after_ms("Thu, 01 Jan 1970 00:00:10 GMT", 4000) == 6000
    assert retry_after_ms("soon", 0) is None
    assert retry_after_ms(None, 0) is None
    assert backoff_ms(1, 1000, 60_000, 0.999) == 999
    assert backoff_ms(5, 1000, 60_000, 0.5) == 8000
    assert backoff_ms(60, 1000, 60_000, 0.999) == 59_940  # capped
    assert backoff_ms(3, 1000, 60_000, 0.0) == 0  # full jitter reaches zero
    hook = Webhook("http://x", new_webhook_secret(), retry_base_ms=100, retry_max_ms=5000)
    assert next_wait_ms(1, hook, 0.0, 2000) == 2000
    assert next_wait_ms(1, hook, 0.0, 10**9) == 5000


def test_filters() -> None:
    secret = new_webhook_secret()
    change = {"type": "attribute.changed", "attribute": "call", "topics": ["t1"]}
    call = {"type": "call.state", "call": {}}
    every = Webhook("http://x", secret)
    assert wanted(every, change) and wanted(every, call)
    only = Webhook("http://x", secret, attributes=("onlineStatus",))
    assert not wanted(only, change) and not wanted(only, call)
    calls = Webhook("http://x", secret, attributes=("call",))
    assert wanted(calls, change) and wanted(calls, call)
    topics = Webhook("http://x", secret, topics=("t2",))
    assert not wanted(topics, change) and not wanted(topics, call)
    assert wanted(Webhook("http://x", secret, topics=("t1",)), change)


def test_order_keys() -> None:
    assert order_keys({"type": "attribute.changed", "userId": "a"}) == ("u:a",)
    assert order_keys({"type": "call.state", "call": {"from": "a", "to": "b"}}) == \
        ("u:a", "u:b")
    assert order_keys({"type": "call.state", "call": {"callId": "c"}}) == ("c:c",)


def test_lanes_keep_each_users_order_and_let_others_go() -> None:
    lanes = Lanes()
    assert lanes.add(1, ["u:a"])
    assert lanes.add(2, ["u:b"])
    assert not lanes.add(3, ["u:a"])
    assert not lanes.add(4, ["u:a", "u:b"])  # a call of both: after both users' events
    assert lanes.add(5, ["u:c"])
    assert lanes.done(2) == []
    assert lanes.done(1) == [3]
    assert lanes.done(3) == [4]
    assert lanes.done(4) == []
    assert lanes.done(5) == []
    assert len(lanes) == 0


def _load(tmp_path: Path, hook: str, hub: str = "") -> Config:
    path = tmp_path / "hub.toml"
    path.write_text(f"[hub]\n{hub}\n[[projects]]\nid = 1\n[[projects.webhooks]]\n{hook}\n")
    return load_config(str(path), environ={})


def test_a_webhook_table(tmp_path: Path) -> None:
    secret = new_webhook_secret()
    config = _load(tmp_path, f'url = "https://h.example/x?a=1"\nsecret = "{secret}"\n'
                   'attributes = ["onlineStatus"]\nmax_in_flight = 4')
    [hook] = config.projects[0].webhooks
    assert hook == Webhook("https://h.example/x?a=1", secret, ("onlineStatus",),
                           max_in_flight=4)


GOOD = 'url = "http://h/x"\nsecret = "' + new_webhook_secret() + '"'


@pytest.mark.parametrize(("text", "problem"), [
    ('url = "ftp://h/x"\nsecret = "whsec_AAAAAAAAAAAAAAAAAAAAAA=="',
     "webhooks[0].url: expected an http:// or https:// URL"),
    ('url = "http://h/x"\nsecret = "nope"', "webhooks[0].secret: expected whsec_"),
    ('url = "http://h/x"\nsecret = "whsec_c2hvcnQ="', "webhooks[0].secret: expected whsec_"),
    (GOOD + "\nmax_in_flight = 0", "webhooks[0].max_in_flight: expected an integer from 1"),
    (GOOD + '\nattributes = ["bad name"]', "webhooks[0].attributes: not an attribute name"),
    (GOOD + "\ntopics = [1]", "webhooks[0].topics: expected an array"),
    (GOOD + "\nurll = 1", "webhooks[0].urll: unknown key"),
])
def test_bad_webhook_tables_are_one_line_errors(tmp_path: Path, text: str,
                                                problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert problem in str(error.value)
    assert "\n" not in str(error.value)


def test_webhooks_refused_where_they_would_stay_silent() -> None:
    hook = Webhook("http://h/x", new_webhook_secret())
    projects = (Project(1, "p", (), (hook,)),)
    check_webhooks(Config(HubSettings(), projects))
    check_webhooks(Config(HubSettings(redis_url="redis://x"), projects))
    with pytest.raises(ConfigError, match="history_retention_days"):
        check_webhooks(Config(HubSettings(history_retention_days=0), projects))
    check_webhooks(Config(HubSettings(history_retention_days=0), (Project(1, "p", ()),)))


def test_a_hub_without_an_event_log_and_with_webhooks_refuses_to_start(
        tmp_path: Path) -> None:
    import subprocess
    import sys
    path = tmp_path / "hub.toml"
    path.write_text(f'[hub]\nhistory_retention_days = 0\ndata_dir = "{tmp_path}"\n'
                    f"[[projects]]\nid = 1\n[[projects.webhooks]]\n{GOOD}\n")
    done = subprocess.run([sys.executable, "-m", "monitor", "hub", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "history_retention_days > 0" in lines[0], done.stderr


def test_monitor_webhook_secret_prints_a_secret_the_config_takes(
        capsys: pytest.CaptureFixture[str]) -> None:
    from monitor.cli import main
    assert main(["webhook", "secret"]) == 0
    secret = capsys.readouterr().out.strip()
    assert webhook_secret_bytes(secret) is not None and len(webhook_secret_bytes(secret)
                                                            or b"") == 32


def test_the_templates_example_uncommented_is_a_valid_webhook(tmp_path: Path) -> None:
    from monitor.config import TEMPLATE, write_initial_config
    assert "# [[projects.webhooks]]" in TEMPLATE
    path = tmp_path / "hub.toml"
    write_initial_config(path)
    lines = path.read_text().split("\n")
    start = lines.index("# [[projects.webhooks]]")
    example = [line[2:] for line in lines[start:] if line.startswith("# ")]
    text = "\n".join(lines[:start] + example).replace("whsec_...", new_webhook_secret())
    path.write_text(text)
    [hook] = load_config(str(path), environ={}).projects[0].webhooks
    assert hook.url == "https://crm.example.com/hooks/presence"
    assert hook.attributes == ("onlineStatus", "call", "manual_status")
    assert hook.retry_for_s == 86_400
