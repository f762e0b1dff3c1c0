"""Webhook alerts received by a real HTTP server on 127.0.0.1, in each format."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from near_failover.ha.alerts import AlertEvent, AlertKind, AlertSender, AlertTarget, retry_delays, send_alert
from near_failover.inventory import InventoryError, parse_inventory
from near_failover.neard.keys import KeyFile
from tests.integration.etcd_server import free_port
from tests.integration.webhook_server import WebhookServer, running_webhook

pytestmark = pytest.mark.integration

BOT_TOKEN = "123456:AAE-secret-bot-token"
ACCOUNT = "pool.poolv1.near"


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    with running_webhook() as server:
        yield server


def role_change() -> AlertEvent:
    return AlertEvent.role_change(
        ACCOUNT, "node-b", "standby", "leader", reason="node-a's neard stopped answering", generation=42,
        details={"fence_proof": "node-a fenced itself"},
    )


async def test_generic_json_body(webhook: WebhookServer) -> None:
    results = await send_alert([AlertTarget(kind="json", url=webhook.url("/hook"))], role_change())
    assert [r.ok for r in results] == [True] and results[0].status == 200
    (got,) = webhook.received
    assert got.path == "/hook" and got.content_type.startswith("application/json")
    body = got.json()
    assert body["source"] == "near-failover" and body["event"] == "role_change"
    assert (body["account_id"], body["node"], body["old_role"], body["new_role"], body["generation"]) == (
        ACCOUNT, "node-b", "standby", "leader", 42)
    assert body["reason"] == "node-a's neard stopped answering"
    assert body["details"] == {"fence_proof": "node-a fenced itself"}
    assert "role standby -> leader (lease generation 42)" in body["text"]
    assert "fence_proof: node-a fenced itself" in body["text"]


async def test_slack_message(webhook: WebhookServer) -> None:
    event = AlertEvent.self_fence(ACCOUNT, "node-a", reason="could not renew the lease for 6.0 s",
                                  generation=41)
    results = await send_alert([AlertTarget(kind="slack", url=webhook.url("/services/T0/B0/x"))], event)
    assert results[0].ok
    (got,) = webhook.received
    body = got.json()
    assert list(body) == ["text"]
    assert body["text"].startswith(f"near-failover: {ACCOUNT}: node node-a: fenced itself (lease generation 41)")
    assert "reason: could not renew the lease for 6.0 s" in body["text"]


async def test_telegram_send_message_form(webhook: WebhookServer) -> None:
    target = AlertTarget(kind="telegram", url=webhook.url(f"/bot{BOT_TOKEN}"), chat_id=-1001234)
    event = AlertEvent.promotion_refused(ACCOUNT, "node-c", reason="no fence proof for node-a")
    results = await send_alert([target], event)
    assert results[0].ok, results
    (got,) = webhook.received
    assert got.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert got.content_type.startswith("application/x-www-form-urlencoded")
    form = got.form()
    assert form["chat_id"] == "-1001234"
    assert form["text"].startswith(f"near-failover: {ACCOUNT}: node node-c: promotion refused")
    assert "no fence proof for node-a" in form["text"]


async def test_key_material_never_leaves(webhook: WebhookServer) -> None:
    key = KeyFile.generate(ACCOUNT)
    secret = key.secret_key_text()
    secret_body = secret.split(":", 1)[1]
    event = AlertEvent.role_change(
        ACCOUNT, "node-b", "standby", "leader",
        reason=f"activated with {key.public_key} (debug: {secret})",
        details={"secret_key": secret, "private_key": "anything", "nested": {"k": [secret_body]}},
    )
    targets = [
        AlertTarget(kind="json", url=webhook.url("/hook")),
        AlertTarget(kind="slack", url=webhook.url("/slack")),
        AlertTarget(kind="telegram", url=webhook.url(f"/bot{BOT_TOKEN}/sendMessage"), chat_id="@ops"),
    ]
    results = await send_alert(targets, event)
    assert all(r.ok for r in results), results
    assert len(webhook.received) == 3
    for got in webhook.received:
        assert secret_body.encode() not in got.body
        assert secret_body[:40].encode() not in got.body
    # The public key is not a secret and helps the operator: it stays.
    # The targets are sent to at once: find the generic JSON one by its path, not by its order.
    generic = next(got for got in webhook.received if got.path == "/hook")
    assert key.public_key in generic.json()["text"]


async def test_failures_are_returned_never_raised(webhook: WebhookServer, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}/bot{BOT_TOKEN}/sendMessage"
    targets = [
        AlertTarget(kind="json", url=webhook.url("/fail"), backoff=0.05),
        AlertTarget(kind="slack", url=webhook.url("/hang"), timeout=0.3, backoff=0.05),
        AlertTarget(kind="telegram", url=dead, chat_id="1", backoff=0.05),
        AlertTarget(kind="telegram", url=webhook.url(f"/tg-refuse/bot{BOT_TOKEN}"), chat_id="1", backoff=0.05),
        AlertTarget(kind="json", url=webhook.url("/fine"), backoff=0.05),
    ]
    async with AlertSender(targets) as sender:
        results = await sender.notify(role_change())
    assert [r.ok for r in results] == [False, False, False, False, True]
    assert [r.attempts for r in results] == [1] * 5  # notify waits for the first try only
    assert results[0].status == 500 and "HTTP 500" in (results[0].error or "")
    assert "no answer within 0.3s" in (results[1].error or "")
    assert results[2].status is None and "ConnectError: connection refused" in (results[2].error or "")
    assert "Bad Request: chat not found" in (results[3].error or "")
    assert results[2].target == f"telegram http://127.0.0.1:{dead.split(':')[2].split('/')[0]}"
    logged = capsys.readouterr()
    assert "alert not delivered" in logged.out + logged.err
    # Slack and Telegram put their credential in the URL: it is in no result and no log line.
    for text in [logged.out, logged.err] + [repr(r) for r in results] + [repr(t) for t in targets]:
        assert BOT_TOKEN not in text and "/bot" not in text


def test_alert_tables_in_the_inventory(tmp_path: Path) -> None:
    head = '[validator]\naccount_id = "pool.poolv1.near"\nchain_id = "localnet"\n'
    node = ('[[node]]\nname = "a"\nhome = "/srv/a/home"\nrpc = "http://127.0.0.1:3030"\n'
            'control = "systemd:neard"\nkey_store = "/srv/a/keys"\nstandby = "hot-swap"\n')
    source = tmp_path / "inventory.toml"
    ok = parse_inventory(
        head + node + '[[alert]]\nkind = "slack"\nurl = "https://hooks.slack.com/services/T/B/s3cr3t"\n'
        '[[alert]]\nkind = "telegram"\nurl = "https://api.telegram.org/bot1:x"\nchat_id = -100\n',
        source,
    )
    assert [a.kind for a in ok.alerts] == ["slack", "telegram"] and ok.alerts[1].chat_id == "-100"
    assert parse_inventory(head + node, source).alerts == []
    with pytest.raises(InventoryError) as caught:
        parse_inventory(head + node + '[[alert]]\nkind = "telegram"\nurl = "https://api.telegram.org/bot1:x"\n', source)
    assert "alert[0]" in str(caught.value) and "needs chat_id" in str(caught.value)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(head + node + '[[alert]]\nkind = "json"\nurl = "ftp://host/tok3n"\n', source)
    assert "alert[0].url" in str(caught.value) and "tok3n" not in str(caught.value)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(head + node + '[[alert]]\nkind = "pager"\nurl = "https://x"\n', source)
    assert "alert[0].kind" in str(caught.value)


async def test_retries_with_backoff_for_every_kind(webhook: WebhookServer, tmp_path: Path) -> None:
    targets = [
        AlertTarget(kind="json", url=webhook.url("/flaky-json"), backoff=0.05),
        AlertTarget(kind="slack", url=webhook.url("/flaky-slack"), backoff=0.05),
        AlertTarget(kind="telegram", url=webhook.url(f"/flaky-tg/bot{BOT_TOKEN}"), chat_id="1", backoff=0.05),
        AlertTarget(kind="apprise", url_file=apprise_file(tmp_path, f"json://127.0.0.1:{webhook.port}/flaky-apprise"), backoff=0.05),
        AlertTarget(kind="json", url=webhook.url("/fail"), attempts=2, backoff=0.05),
    ]
    assert retry_delays(targets[0]) == [0.05, 0.1]
    results = await send_alert(targets, role_change())
    assert [(r.ok, r.attempts) for r in results] == [(True, 3), (True, 3), (True, 3), (True, 3), (False, 2)], results
    paths = [r.path.split("/bot")[0] for r in webhook.received]
    for path in ("/flaky-json", "/flaky-slack", "/flaky-tg", "/flaky-apprise"):
        assert paths.count(path) == 3, (path, paths)
    assert paths.count("/fail") == 2


async def test_notify_retries_in_the_background(webhook: WebhookServer) -> None:
    async with AlertSender([AlertTarget(kind="json", url=webhook.url("/flaky"), backoff=0.05)]) as sender:
        (first,) = await sender.notify(role_change())
        assert not first.ok and first.status == 503 and len(webhook.received) == 1
    # Closing the sender waited for the retries: the third try got through.
    assert [r.path for r in webhook.received] == ["/flaky"] * 3


def apprise_file(directory: Path, *urls: str, mode: int = 0o600) -> Path:
    path = directory / f"apprise-{len(list(directory.iterdir()))}.urls"
    path.write_text("# apprise URLs\n" + "\n".join(urls) + "\n")
    path.chmod(mode)
    return path


async def test_apprise_end_to_end_through_its_json_service(
    webhook: WebhookServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    secret_path = "/apprise-hook-s3cr3t"
    target = AlertTarget(kind="apprise", url_file=apprise_file(tmp_path, f"json://127.0.0.1:{webhook.port}{secret_path}"))
    key = KeyFile.generate(ACCOUNT)
    event = AlertEvent.condition(AlertKind.STANDBY_UNREADY, ACCOUNT, "node-c", f"no valid staged key (debug {key.secret_key_text()})")
    (result,) = await send_alert([target], event)
    assert result.ok, result
    (got,) = webhook.received
    assert got.path == secret_path and got.content_type.startswith("application/json")
    body = got.json()
    assert body["title"] == f"near-failover: {ACCOUNT}: node node-c: standby NOT READY to take over"
    assert body["message"].startswith("reason: no valid staged key")
    assert key.secret_key_text().split(":", 1)[1][:40] not in got.body.decode()

    dead = AlertTarget(kind="apprise", url_file=apprise_file(tmp_path, f"json://user:pa55word@127.0.0.1:{free_port()}{secret_path}"), attempts=2, backoff=0.01, timeout=1)
    (failed,) = await send_alert([dead], event)
    assert not failed.ok and failed.attempts == 2 and failed.target == f"apprise {dead.url_file}"
    unknown = AlertTarget(kind="apprise", url_file=apprise_file(tmp_path, "nosuchservice://t0ken@host/s3cr3t"), attempts=1)
    (refused,) = await send_alert([unknown], event)
    assert not refused.ok and "accepts 0 of the 1 URLs" in (refused.error or "")
    logged = capsys.readouterr()
    assert "could not notify" in (failed.error or "")
    assert caplog.text  # apprise logged the failure, and not the URL's credentials
    for text in (logged.out, logged.err, caplog.text, repr(failed), repr(dead)):
        assert "s3cr3t" not in text and "pa55word" not in text


def test_apprise_url_file_must_be_private(tmp_path: Path) -> None:
    head = '[validator]\naccount_id = "pool.poolv1.near"\nchain_id = "localnet"\n'
    node = ('[[node]]\nname = "a"\nhome = "/srv/a/home"\nrpc = "http://127.0.0.1:3030"\n'
            'control = "systemd:neard"\nkey_store = "/srv/a/keys"\nstandby = "hot-swap"\n')
    source = tmp_path / "inventory.toml"
    private = apprise_file(tmp_path, "discord://1234/t0ken")
    ok = parse_inventory(head + node + f'[[alert]]\nkind = "apprise"\nurl_file = "{private}"\n', source)
    assert ok.alerts[0].url_file == private and "t0ken" not in repr(ok.alerts[0])
    for bad, expected in (
        (apprise_file(tmp_path, "discord://1234/t0ken", mode=0o644), "chmod 600"),
        (tmp_path / "missing.urls", "cannot read it"),
        (apprise_file(tmp_path), "no apprise URL"),
    ):
        with pytest.raises(InventoryError) as caught:
            parse_inventory(head + node + f'[[alert]]\nkind = "apprise"\nurl_file = "{bad}"\n', source)
        assert "alert[0]" in str(caught.value) and expected in str(caught.value) and "t0ken" not in str(caught.value)
    with pytest.raises(InventoryError) as caught:
        parse_inventory(head + node + '[[alert]]\nkind = "apprise"\nurl = "https://x/tok"\n', source)
    assert "url_file" in str(caught.value)


INVENTORY_HEAD = (
    '[validator]\naccount_id = "pool.poolv1.near"\nchain_id = "localnet"\n'
    '[[node]]\nname = "a"\nhome = "/srv/a/home"\nrpc = "http://127.0.0.1:3030"\n'
    'control = "systemd:neard"\nkey_store = "/srv/a/keys"\nstandby = "hot-swap"\n'
)


def alert_test(inventory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "near_failover", "alert", "test", "-c", str(inventory), "--json"],
                          capture_output=True, text=True, timeout=120)


def test_alert_test_command_reaches_every_target(webhook: WebhookServer, tmp_path: Path) -> None:
    urls = apprise_file(tmp_path, f"json://127.0.0.1:{webhook.port}/apprise-s3cr3t")
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        INVENTORY_HEAD
        + f'[[alert]]\nkind = "json"\nurl = "{webhook.url("/hook")}"\n'
        + f'[[alert]]\nkind = "telegram"\nurl = "{webhook.url(f"/bot{BOT_TOKEN}")}"\nchat_id = "@ops"\n'
        + f'[[alert]]\nkind = "apprise"\nurl_file = "{urls}"\n'
    )
    done = alert_test(inventory)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["ok"] for r in json.loads(done.stdout)] == [True, True, True]
    assert sorted(r.path.split("/bot")[0] for r in webhook.received) == ["", "/apprise-s3cr3t", "/hook"]
    assert all("near-failover alert test" in unquote_plus(r.body.decode()) for r in webhook.received)

    # One target that keeps failing: exit 1, after its retries, the others still sent.
    webhook.received.clear()
    inventory.write_text(
        INVENTORY_HEAD
        + f'[[alert]]\nkind = "json"\nurl = "{webhook.url("/hook")}"\n'
        + f'[[alert]]\nkind = "slack"\nurl = "{webhook.url("/fail/T0/B0/s3cr3t")}"\nbackoff = 0.05\n'
    )
    done = alert_test(inventory)
    assert done.returncode == 1, done.stdout + done.stderr
    results = json.loads(done.stdout)
    assert [(r["ok"], r["attempts"]) for r in results] == [(True, 1), (False, 3)]
    assert "HTTP 500" in results[1]["error"] and "s3cr3t" not in done.stdout + done.stderr
    assert [r.path for r in webhook.received].count("/fail/T0/B0/s3cr3t") == 3

    inventory.write_text(INVENTORY_HEAD)
    done = alert_test(inventory)
    assert done.returncode == 2 and "no alert target" in done.stderr and "Traceback" not in done.stderr
