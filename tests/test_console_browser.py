"""The operations console in a real headless browser (Debian's chromium, driven through its
chromedriver by selenium) against the whole daemon on the FreeSWITCH simulator.

Without a browser these tests skip and say why; `.ci/run` installs one and sets
ESLCHAN_REQUIRE_BROWSER=1, under which a missing browser is a failure rather than a skip.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import gevent
import pytest
from conftest import eventually

from eslchan.api.events import hub_of
from eslchan.daemon import Daemon
from eslchan.demo import ACME, ADMIN, GLOBEX, PARTIES, demo_traffic

pytestmark = pytest.mark.timeout(120)

ALICE, BOB, CAROL, DAVE = PARTIES  # Acme, Acme, Acme Sales, Globex
REPO = Path(__file__).resolve().parents[1]
# the README's picture, written only when asked: a test run leaves the tree as it found it
SCREENSHOT = REPO / "docs" / "console.png"
UPDATE_SCREENSHOT = os.environ.get("ESLCHAN_UPDATE_SCREENSHOT") == "1"
CHROMIUM = os.environ.get("ESLCHAN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ESLCHAN_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
#: Long enough for a loaded 2-core machine; the console itself updates within a frame.
SEEN = 10.0


def browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"no browser: {path} is missing (apt-get install chromium chromium-driver; .ci/run does)"
    return None


@pytest.fixture
def browser():
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("ESLCHAN_REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.TemporaryDirectory(prefix="eslchan-chromium-")
    options.add_argument(f"--user-data-dir={profile.name}")
    options.add_argument("--window-size=1440,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: selenium never looks for (or downloads) a browser or driver
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        profile.cleanup()


class Console:
    """The console page as a person uses it, plus what a test reads off the DOM."""

    def __init__(self, driver, daemon):
        self.driver = driver
        self.url = daemon.url if daemon is not None else None

    def open(self) -> Console:
        self.driver.get(self.url + "/")
        eventually(lambda: self.js("return document.readyState") == "complete", timeout=SEEN)
        return self

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def find(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def login(self, api_key: str) -> None:
        field = self.find('input[name="api_key"]')
        field.clear()
        field.send_keys(api_key)
        self.find("#login-submit").click()

    def signed_in(self, api_key: str) -> Console:
        self.open().login(api_key)
        eventually(lambda: self.js("return !document.querySelector('#app-view').hidden"), timeout=SEEN)
        eventually(lambda: self.status() == "live", timeout=SEEN)
        return self

    def status(self) -> str:
        return self.js("return document.querySelector('#link-status').dataset.state")

    def uuids(self) -> set[str]:
        return set(
            self.js("return [...document.querySelectorAll('tr[data-uuid]')].map(tr => tr.dataset.uuid)")
        )

    def row(self, uuid: str) -> dict | None:
        """What a row shows: its cells' text, its state, its call (tbody) and flags."""
        return self.js(
            """
            const tr = document.querySelector(`tr[data-uuid="${arguments[0]}"]`);
            if (!tr) return null;
            return {
              cells: [...tr.cells].map(td => td.innerText.trim()),
              state: tr.dataset.state,
              call: tr.closest('tbody').dataset.call,
              partner: tr.classList.contains('partner'),
              stale: tr.classList.contains('is-stale'),
              shown: !tr.closest('tbody').hidden,
            };
            """,
            uuid,
        )

    def wait_row(self, uuid: str, predicate=lambda row: True, timeout: float = SEEN) -> dict:
        def check():
            row = self.row(uuid)
            return row if row is not None and predicate(row) else None

        check.__name__ = f"row {uuid} as expected"
        return eventually(check, timeout=timeout)

    def wait_gone(self, uuid: str, timeout: float = SEEN) -> None:
        def gone():
            return self.row(uuid) is None

        gone.__name__ = f"row {uuid} gone"
        eventually(gone, timeout=timeout)

    def click_row_button(self, uuid: str, act: str) -> None:
        self.find(f'tr[data-uuid="{uuid}"] button[data-act="{act}"]').click()

    def errors(self) -> list[str]:
        """Script errors the page logged (failed requests the test provoked aside)."""
        return [
            e["message"]
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
        ]

    def module(self, body: str):
        """Run ``body`` (an async function body) in the page, where it may import the console's
        modules; returns its result, or raises with the page's error."""
        result = self.driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const body = arguments[0];
            const run = new Function("load", `return (async () => { ${body} })();`);
            run((name) => import(new URL(name, document.baseURI).href))
              .then((value) => done({ value }), (err) => done({ error: String(err && err.stack || err) }));
            """,
            body,
        )
        assert "error" not in result, result["error"]
        return result["value"]


def call_from(sim, party, **kw):
    return sim.create_call(
        account_id=party.account_id,
        user_id=party.user_id,
        device_id=party.device_id,
        caller_id_name=party.name,
        caller_id_number=party.number,
        username=party.name.lower(),
        **kw,
    )


def live_uuids(sim, accounts: set[str]) -> set[str]:
    return {
        ch.uuid for ch in sim.channels() if ch.variables.get("eslchan_account_id") in accounts and not ch.gone
    }


# --- signing in -------------------------------------------------------------------------------


def test_a_bad_key_shows_the_error_and_a_good_one_opens_the_board(browser, daemon, keys):
    console = Console(browser, daemon).open()
    assert console.js("return location.pathname") == "/console/"
    console.login("not-a-key-0123456789")
    eventually(lambda: "not accepted" in console.find("#login-error").text, timeout=SEEN)
    assert console.find("#app-view").get_attribute("hidden") is not None
    assert console.find('input[name="api_key"]').get_attribute("aria-invalid") == "true"

    console.login(keys[ACME])
    eventually(lambda: console.status() == "live", timeout=SEEN)
    assert console.find("#who-name").text == "Acme"
    # the token is kept for this tab; the key itself is never stored
    stored = console.js("return sessionStorage.getItem('eslchan.console.session')")
    assert json.loads(stored)["account_id"] == ACME
    assert keys[ACME] not in console.js("return JSON.stringify({...sessionStorage, ...localStorage})")
    assert console.errors() == []


@pytest.fixture
def daemon_config(daemon_config):
    """The demo tenancy (for every test here), with few failed logins allowed so the 429 case is
    quick to reach."""
    return replace(daemon_config, auth=replace(daemon_config.auth, failed_auth_per_minute=3))


def test_too_many_bad_keys_say_when_to_try_again(browser, daemon):
    console = Console(browser, daemon).open()
    for attempt in range(3):
        console.login(f"wrong-key-{attempt}-0123456789")
        eventually(lambda: console.find("#login-error").text, timeout=SEEN)
        eventually(lambda: console.find("#login-submit").is_enabled(), timeout=SEEN)
    console.login("wrong-key-once-more-0123456789")
    eventually(lambda: "Try again in" in console.find("#login-error").text, timeout=SEEN)
    assert console.find("#login-submit").get_attribute("disabled") is not None
    assert "Try again in" in console.find("#login-submit").text


def test_the_demo_as_printed_shows_live_calls(browser):
    """`eslchan demo` prints the console's URL and a key; with those alone a person sees calls."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo = subprocess.Popen(
        [sys.executable, "-m", "eslchan", "demo", "--listen", f"127.0.0.1:{port}", "--esl-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        printed = ""
        for line in demo.stdout:
            printed += line
            if "Stop with Ctrl-C" in line:
                break
        url = re.search(r"Open the live call board:\s+(\S+)", printed).group(1)
        key = re.search(r"sign in with the key (\S+)", printed).group(1)
        assert url == f"http://127.0.0.1:{port}/console/"
        browser.get(url)
        console = Console(browser, None)
        console.login(key)
        eventually(lambda: len(console.uuids()) >= 2, timeout=SEEN)
        assert console.status() == "live"
        assert console.errors() == []
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(15) == 0


@pytest.fixture
def short_tokens(daemon_config):
    """A daemon whose tokens live 4 s, so renewal and expiry happen within a test."""
    config = replace(daemon_config, auth=replace(daemon_config.auth, token_ttl=4.0))
    d = Daemon(config)
    d.start()
    eventually(lambda: all(link.is_up for link in d.links.values()), timeout=10)
    yield d
    d.stop(drain_seconds=0.5)


def test_the_token_is_renewed_before_it_expires(browser, short_tokens, simulator, keys):
    console = Console(browser, short_tokens).signed_in(keys[ACME])

    def token():
        return json.loads(console.js("return sessionStorage.getItem('eslchan.console.session')"))[
            "auth_token"
        ]

    first = token()
    eventually(lambda: token() != first, timeout=SEEN)  # renewed at four fifths of its life
    gevent.sleep(3.0)  # past the first token's expiry: the board still follows the switch
    call = call_from(simulator, ALICE, destination="1002")
    console.wait_row(call.a_uuid)
    assert console.find("#login-view").get_attribute("hidden") is not None
    assert console.errors() == []


def test_after_a_reload_an_expiring_session_asks_for_the_key(browser, short_tokens, keys):
    console = Console(browser, short_tokens).signed_in(keys[ACME])
    browser.refresh()  # the key was in memory only: this tab keeps its token, not the key
    eventually(lambda: console.js("return !document.querySelector('#app-view').hidden"), timeout=SEEN)
    eventually(lambda: "Enter your API key" in console.find("#login-error").text, timeout=SEEN)
    assert console.js("return sessionStorage.getItem('eslchan.console.session')") is None


# --- the live board ---------------------------------------------------------------------------


def test_calls_appear_change_and_disappear_as_the_switch_makes_them(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    ringing = call_from(simulator, ALICE, destination="1002", answered=False)
    row = console.wait_row(ringing.a_uuid, lambda r: r["state"] == "ringing")
    assert row["cells"][0].startswith("Alice") and "1001" in row["cells"][0]
    assert row["cells"][1].startswith("1002")
    console.wait_row(ringing.b_uuid, lambda r: r["state"] == "ringing")

    simulator.answer_call(ringing.b_uuid)
    console.wait_row(ringing.a_uuid, lambda r: r["state"] == "talking")
    # bridged, both legs are one call: the B-leg sits in the A-leg's tbody, as its other leg
    leg = console.wait_row(ringing.b_uuid, lambda r: r["state"] == "talking")
    assert leg["call"] == ringing.a_uuid and leg["partner"]
    assert not console.row(ringing.a_uuid)["partner"]

    # the duration ticks on its own, without events
    first = console.row(ringing.a_uuid)["cells"][3]
    console.wait_row(ringing.a_uuid, lambda r: r["cells"][3] != first)

    simulator.hangup(ringing.a_uuid)
    console.wait_gone(ringing.a_uuid)
    console.wait_gone(ringing.b_uuid)
    assert console.errors() == []


def test_the_demo_calls_come_and_go_on_the_board(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ADMIN])
    traffic = demo_traffic(simulator, calls=4)  # at 20x speed each call lasts a few seconds
    traffic.start()
    try:
        everyone = {p.account_id for p in PARTIES}
        seen: set[str] = set()

        def board_follows_the_switch():
            on_board = console.uuids()
            seen.update(on_board)
            return on_board and on_board == live_uuids(simulator, everyone)

        eventually(board_follows_the_switch, timeout=30)
        first = set(seen)

        def first_calls_ended_and_others_came():
            on_board = console.uuids()
            seen.update(on_board)
            return not (first & on_board) and on_board - first

        eventually(first_calls_ended_and_others_came, timeout=60)
    finally:
        traffic.stop()
    assert console.errors() == []


def test_hang_up_from_the_board_ends_the_call_on_the_switch(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    call = call_from(simulator, BOB, destination="2001")
    console.wait_row(call.b_uuid, lambda r: r["state"] == "talking")

    console.click_row_button(call.a_uuid, "hangup")
    # the first press only arms the button: a stray click hangs nothing up
    gevent.sleep(0.3)
    assert simulator.channel(call.a_uuid) is not None
    assert console.find(f'tr[data-uuid="{call.a_uuid}"] button[data-act="hangup"]').text == "Confirm"
    console.click_row_button(call.a_uuid, "hangup")

    eventually(lambda: simulator.channel(call.a_uuid) is None, timeout=SEEN)
    assert f"api uuid_kill {call.a_uuid} NORMAL_CLEARING" in simulator.commands
    console.wait_gone(call.a_uuid)
    console.wait_gone(call.b_uuid)
    eventually(lambda: "hung up" in console.find("#toasts").text, timeout=SEEN)
    assert console.errors() == []


def test_a_tenant_never_sees_another_tenants_calls(browser, daemon, simulator, keys):
    acme = call_from(simulator, ALICE, destination="1002")
    console = Console(browser, daemon).signed_in(keys[GLOBEX])
    own = call_from(simulator, DAVE, destination="1002")
    console.wait_row(own.a_uuid)
    # an Acme call made after Globex's own one: once a later Globex call shows, the stream has
    # delivered everything before it, and the Acme call was never among it
    later_acme = call_from(simulator, BOB, destination="2001")
    barrier = call_from(simulator, DAVE, destination="1001")
    console.wait_row(barrier.a_uuid)
    assert console.uuids() == set(own.uuids) | set(barrier.uuids)
    foreign = set(acme.uuids) | set(later_acme.uuids)
    assert not foreign & set(
        console.js("return [...document.body.innerHTML.matchAll(/[0-9a-f-]{36}/g)].map(m => m[0])")
    )
    # the account picker offers Globex only (it has no sub-account)
    options = console.js("return [...document.querySelectorAll('#account-picker option')].map(o => o.value)")
    assert options == [GLOBEX]


def test_a_reseller_sees_its_sub_accounts_and_can_narrow_to_one(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    own = call_from(simulator, ALICE, destination="1002")
    sub = call_from(simulator, CAROL, destination="1001")
    globex = call_from(simulator, DAVE, destination="1002")
    console.wait_row(own.a_uuid)
    row = console.wait_row(sub.a_uuid)
    assert row["cells"][7] == "Acme Sales"  # the account column shows once several are in scope
    assert globex.a_uuid not in console.uuids()

    console.find("#subaccounts").click()  # only Acme itself now
    console.wait_gone(sub.a_uuid)
    console.wait_row(own.a_uuid)
    assert console.errors() == []


def test_filters_and_counts(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    alice = call_from(simulator, ALICE, destination="2001")
    bob = call_from(simulator, BOB, destination="1001", answered=False)
    console.wait_row(alice.a_uuid, lambda r: r["state"] == "talking")
    console.wait_row(bob.a_uuid, lambda r: r["state"] == "ringing")

    def count(state: str) -> str:
        return console.js(f"return document.querySelector('.chip-{state} .chip-count').textContent")

    eventually(lambda: count("ringing") == "2" and count("talking") == "2", timeout=SEEN)

    console.find("#f-text").send_keys("bob")
    console.wait_row(alice.a_uuid, lambda r: not r["shown"])
    assert console.row(bob.a_uuid)["shown"] and console.row(bob.b_uuid)["shown"]  # the whole call
    console.find("#f-clear").click()
    console.wait_row(alice.a_uuid, lambda r: r["shown"])

    console.find(".chip-ringing").click()  # a state count filters by that state
    console.wait_row(alice.a_uuid, lambda r: not r["shown"])
    assert console.row(bob.a_uuid)["shown"]
    assert console.find(".chip-ringing").get_attribute("aria-pressed") == "true"
    assert console.errors() == []


def test_after_the_stream_drops_the_board_reloads_the_listing(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    before = call_from(simulator, ALICE, destination="1002")
    console.wait_row(before.a_uuid)

    hub = hub_of(daemon.app)
    hub.close()  # ends every stream and refuses new ones, as a stopping eslchan does
    eventually(lambda: console.status() == "reconnecting", timeout=SEEN)
    # what happens while no stream is open reaches the board only through the listing
    during = call_from(simulator, BOB, destination="2001")
    simulator.hangup(before.a_uuid)
    eventually(
        lambda: (
            daemon.registry.find(during.b_uuid) is not None and daemon.registry.find(before.a_uuid) is None
        )
    )
    hub.closed = False

    eventually(lambda: console.status() == "live", timeout=30)
    console.wait_row(during.a_uuid)
    console.wait_gone(before.a_uuid)


def test_a_reset_on_the_stream_reloads_the_listing(browser, daemon, simulator, keys):
    """What a cluster instance sends when its mirror started again from the snapshots: the
    events in between never reach the stream, which stays open and says ``reset``."""
    console = Console(browser, daemon).signed_in(keys[ACME])
    before = call_from(simulator, ALICE, destination="1002")
    console.wait_row(before.a_uuid)
    hub = hub_of(daemon.app)
    hub._unlisten()  # the stream hears nothing of what follows
    during = call_from(simulator, BOB, destination="2001")
    simulator.hangup(before.a_uuid)
    eventually(
        lambda: (
            daemon.registry.find(during.b_uuid) is not None and daemon.registry.find(before.a_uuid) is None
        )
    )
    hub._unlisten = daemon.registry.listen(hub._on_event)
    gevent.sleep(0.5)
    assert console.row(during.a_uuid) is None and console.row(before.a_uuid) is not None  # missed
    hub.reset_all()
    console.wait_row(during.a_uuid)
    console.wait_gone(before.a_uuid)
    assert console.status() == "live"  # the same stream goes on


def test_a_node_down_marks_its_rows_stale(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    call = call_from(simulator, ALICE, destination="1002")
    console.wait_row(call.a_uuid, lambda r: not r["stale"])
    eventually(
        lambda: console.js("return document.querySelector('.node-card')?.dataset.state") == "up", timeout=SEEN
    )

    greenlet = gevent.spawn(simulator.restart, keep_channels=True, down_for=4.0)
    try:
        row = console.wait_row(call.a_uuid, lambda r: r["stale"])
        assert "stale" in row["cells"][2]
        assert "fs1 down" in console.find("#link-status").text
        assert console.js("return document.querySelector('.node-card').dataset.state") != "up"
    finally:
        greenlet.join()
    console.wait_row(call.a_uuid, lambda r: not r["stale"], timeout=30)


# --- the details drawer and its actions -------------------------------------------------------


def test_details_show_every_field_and_actions_say_what_happened(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    call = call_from(simulator, ALICE, destination="1002")
    console.wait_row(call.b_uuid, lambda r: r["state"] == "talking")
    console.click_row_button(call.a_uuid, "details")

    eventually(lambda: console.find("#drawer-title").text == "Alice → 1002", timeout=SEEN)
    fields = eventually(
        lambda: console.js(
            "const dl = document.querySelector('#drawer-fields');"
            "return dl.children.length ? [...dl.querySelectorAll('dt')].map(dt => dt.textContent) : null"
        ),
        timeout=SEEN,
    )
    for name in ("uuid", "state", "callstate", "other_leg", "owner_id", "node"):
        assert name in fields
    variables = console.find("#drawer-vars").text
    assert "owner_id" in variables and ALICE.user_id in variables
    legs = console.js("return [...document.querySelectorAll('#drawer-legs code')].map(c => c.textContent)")
    assert legs == [call.a_uuid, call.b_uuid]

    # hold, from the drawer: the switch holds the channel and the board shows it
    console.find('#drawer [data-action="hold"]').click()
    eventually(lambda: "Put on hold" in console.find("#drawer-outcome").text, timeout=SEEN)
    console.wait_row(call.a_uuid, lambda r: r["state"] == "held")
    assert simulator.channel(call.a_uuid).held
    unhold = console.find('#drawer [data-action="unhold"]')
    eventually(unhold.is_displayed, timeout=SEEN)
    unhold.click()
    console.wait_row(call.a_uuid, lambda r: r["state"] == "talking")

    # an error in plain words: a transfer target FreeSWITCH would never be sent
    console.find("#drawer details:nth-of-type(1) summary").click()
    console.find("#t-target").send_keys("26 00")
    console.find('form[data-action="transfer"] button[type=submit]').click()
    eventually(lambda: "Not sent to FreeSWITCH" in console.find("#drawer-outcome").text, timeout=SEEN)
    assert "target" in console.find("#drawer-outcome").text

    # DTMF reaches the switch
    console.find("#drawer details:nth-of-type(3) summary").click()
    console.find("#d-digits").send_keys("12#")
    console.find('form[data-action="dtmf"] button[type=submit]').click()
    eventually(lambda: "Sent DTMF 12#" in console.find("#drawer-outcome").text, timeout=SEEN)
    assert f"api uuid_send_dtmf {call.a_uuid} 12#" in simulator.commands

    console.find('#drawer [data-action="record"]').click()
    eventually(lambda: "Recording started" in console.find("#drawer-outcome").text, timeout=SEEN)
    console.find('#drawer [data-action="record"]').click()
    eventually(lambda: "Recording stopped" in console.find("#drawer-outcome").text, timeout=SEEN)
    assert any(c.startswith(f"api uuid_record {call.a_uuid} stop ") for c in simulator.commands)

    console.find("#drawer details:nth-of-type(2) summary").click()
    console.find("#p-id").send_keys("welcome")
    console.find('form[data-action="play"] button[type=submit]').click()
    eventually(lambda: "Playing welcome" in console.find("#drawer-outcome").text, timeout=SEEN)

    target = console.find("#t-target")
    target.clear()
    target.send_keys("2600")
    console.find('form[data-action="transfer"] button[type=submit]').click()
    eventually(lambda: "Transferred to 2600" in console.find("#drawer-outcome").text, timeout=SEEN)
    assert any(c.startswith(f"api uuid_transfer {call.a_uuid} 2600") for c in simulator.commands)
    assert console.errors() == []


def test_the_board_works_from_the_keyboard(browser, daemon, simulator, keys):
    from selenium.webdriver.common.keys import Keys

    console = Console(browser, daemon).signed_in(keys[ACME])
    call = call_from(simulator, ALICE, destination="1002")
    console.wait_row(call.b_uuid, lambda r: r["state"] == "talking")
    details = console.find(f'tr[data-uuid="{call.a_uuid}"] button[data-act="details"]')
    details.send_keys(Keys.ENTER)
    eventually(lambda: console.find("#drawer").is_displayed(), timeout=SEEN)
    assert console.js("return document.activeElement.id") == "drawer"  # focus moves into it
    console.js("return document.activeElement").send_keys(Keys.ESCAPE)
    eventually(lambda: not console.find("#drawer").is_displayed(), timeout=SEEN)
    assert console.js("return document.activeElement") == details  # and back where it was
    console.find("body").send_keys("/")
    assert console.js("return document.activeElement.id") == "f-text"


def test_a_pasted_metaflow_runs_and_shows_its_trail(browser, daemon, simulator, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    call = call_from(simulator, ALICE, destination="1002")
    console.wait_row(call.b_uuid, lambda r: r["state"] == "talking")
    console.click_row_button(call.a_uuid, "details")
    console.find("#drawer details:nth-of-type(4) summary").click()
    # the stored flows of conf/callflows are offered by name
    eventually(lambda: "voicemail_prompt" in console.find("#m-stored").text, timeout=SEEN)

    flow = {"module": "sleep", "data": {"duration": 600}, "children": {"_": {"module": "hangup", "data": {}}}}
    console.find("#m-tree").send_keys(json.dumps(flow))
    console.find('form[data-action="metaflow"] button[type=submit]').click()
    eventually(lambda: "Metaflow started" in console.find("#drawer-outcome").text, timeout=SEEN)
    trail = eventually(
        lambda: console.js(
            "return [...document.querySelectorAll('#drawer-runs .trail li')]"
            ".map(li => [li.className, li.querySelector('.module').textContent])"
        ),
        timeout=SEEN,
    )
    assert trail == [["trail-current", "sleep"], ["trail-ahead", "hangup"]]

    console.find("#drawer-runs button").click()  # stop the run
    # the run stays listed, over: its badge says so, it offers no Stop, its trail is what it ran
    eventually(
        lambda: console.js("return document.querySelector('#drawer-runs .badge')?.textContent") == "stopped",
        timeout=SEEN,
    )
    assert not console.js("return document.querySelectorAll('#drawer-runs button').length")
    assert console.js(
        "return [...document.querySelectorAll('#drawer-runs .trail li')]"
        ".map(li => [li.className, li.querySelector('.module').textContent])"
    ) == [["trail-done", "sleep"]]
    assert simulator.channel(call.a_uuid) is not None  # stopped before its hangup node

    # a stored callflow, picked by name: plays a beep, then hangs up
    console.find('form[data-action="callflow"] button[type=submit]').click()
    eventually(
        lambda: "Callflow voicemail_prompt started" in console.find("#drawer-outcome").text, timeout=SEEN
    )
    eventually(lambda: simulator.channel(call.a_uuid) is None, timeout=SEEN)
    console.wait_gone(call.a_uuid)
    eventually(lambda: "This call has ended" in console.find("#drawer").text, timeout=SEEN)
    assert console.errors() == []


# --- the pure logic, run in the browser --------------------------------------------------------


def test_board_logic_in_the_browser(browser, daemon):
    console = Console(browser, daemon).open()
    result = console.module(
        """
        const m = await load("model.js");
        const row = (uuid, extra) => ({uuid, direction: "inbound", answered: true, is_onhold: false,
                                       other_leg: null, elapsed_s: 0, node: "fs1", ...extra});
        const ch = (r, at = 0) => m.makeChannel(r, "acc", at);
        const channels = new Map([
          ["a", ch(row("a", {other_leg: "b", caller_id_name: "Alice", caller_id_number: "1001"}))],
          ["b", ch(row("b", {other_leg: "a", direction: "outbound"}))],
          ["c", ch(row("c", {answered: false}))],
          ["d", ch(row("d", {other_leg: "x"}))],           // partner not on the board
          ["e", ch(row("e", {direction: "outbound"}), 5)],   // a B-leg the A-leg does not name yet
          ["f", ch(row("f", {other_leg: "e", direction: "outbound"}), 9)],
        ]);
        const calls = Object.fromEntries([...m.groupCalls(channels)].map(([k, v]) => [k, v]));
        return {
          calls,
          states: [...channels.values()].map(m.channelState),
          held: m.channelState(ch(row("h", {is_onhold: true}))),
          ending: m.channelState(m.makeChannel(row("z"), "acc", 0, true)),
          counts: m.countStates([...channels.values()], new Set(["fs1"])),
          durations: [7, 754, 3723].map(m.formatDuration),
          filterText: m.matchesFilter(channels.get("a"), {...m.EMPTY_FILTER, text: "ali 1001"}),
          filterMiss: m.matchesFilter(channels.get("a"), {...m.EMPTY_FILTER, text: "alice 2001"}),
          filterDir: m.matchesFilter(channels.get("b"), {...m.EMPTY_FILTER, direction: "inbound"}),
          filterState: m.matchesFilter(channels.get("c"), {...m.EMPTY_FILTER, state: "ringing"}),
          effects: ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_DESTROY"]
            .map(m.eventEffect),
          renew: [m.renewDelay(0, 3600, 0), m.renewDelay(0, 60, 0), m.renewDelay(0, 3600, 4e6)],
          scope: m.accountsInScope("r", [{id: "s", tree: ["r"]}, {id: "t", tree: ["r", "s"]},
                                         {id: "u", tree: ["q"]}], true),
          scopeAlone: m.accountsInScope("r", [{id: "s", tree: ["r"]}], false),
          metrics: m.sumBy(m.parseMetrics(
            '# HELP x\\neslchan_events_received_total{node="fs1"} 12.0\\n' +
            'eslchan_events_received_total{node="fs2"} 3\\nbroken line\\n' +
            'eslchan_esl_command_seconds_count{node="fs1",command="api",outcome="ok"} 4\\n'),
            "eslchan_events_received_total", "node"),
          rate: [m.ratePerSecond(10, 30, 2), m.ratePerSecond(30, 5, 2), m.ratePerSecond(undefined, 5, 2)],
          spark: m.sparklinePoints([0, 5, 10], 100, 20, 5),
          // FreeSWITCH bridges and unbridges on one leg's events only
          bridged: m.bridgedPartnerRow("CHANNEL_BRIDGE", row("a", {other_leg: "b"}), row("a"),
                                       new Map([["b", row("b")]])),
          unbridged: m.bridgedPartnerRow("CHANNEL_UNBRIDGE", row("a"), row("a", {other_leg: "b"}),
                                         new Map([["b", row("b", {other_leg: "a"})]])),
          unrelated: m.bridgedPartnerRow("CHANNEL_UNBRIDGE", row("a"), row("a", {other_leg: "b"}),
                                         new Map([["b", row("b", {other_leg: "c"})]])),
          absent: m.bridgedPartnerRow("CHANNEL_BRIDGE", row("a", {other_leg: "b"}), row("a"), new Map()),
        };
        """
    )
    assert result["calls"] == {"a": ["a", "b"], "c": ["c"], "d": ["d"], "e": ["e", "f"]}
    assert result["states"] == ["talking", "talking", "ringing", "talking", "answered", "talking"]
    assert (result["held"], result["ending"]) == ("held", "ending")
    assert result["counts"] == {
        "total": 6,
        "stale": 6,
        "ringing": 1,
        "talking": 4,
        "answered": 1,
        "held": 0,
        "ending": 0,
    }
    assert result["durations"] == ["0:07", "12:34", "1:02:03"]
    assert result["filterText"] and not result["filterMiss"]
    assert not result["filterDir"] and result["filterState"]
    assert result["effects"] == ["add", "update", "ending", "remove"]
    assert result["renew"] == [2_880_000, 30_000, 0]
    assert result["scope"] == ["r", "s", "t"] and result["scopeAlone"] == ["r"]
    assert result["metrics"] == {"fs1": 12, "fs2": 3}
    assert result["rate"] == [10, 0, None]
    assert result["spark"] == [[50, 19], [75, 10], [100, 1]]
    assert result["bridged"]["uuid"] == "b" and result["bridged"]["other_leg"] == "a"
    assert result["unbridged"]["uuid"] == "b" and result["unbridged"]["other_leg"] is None
    assert result["unrelated"] is None and result["absent"] is None


def test_action_requests_and_words_in_the_browser(browser, daemon):
    console = Console(browser, daemon).open()
    result = console.module(
        """
        const a = await load("actions.js");
        const w = await load("words.js");
        const fails = (kind, fields) => { try { a.buildAction(kind, fields); return null; }
                                          catch (e) { return [e.field, e.message]; } };
        return {
          hangup: a.buildAction("hangup"),
          blind: a.buildAction("transfer", {target: " 2600 ", transfer_type: "blind", leg: "peer"}),
          attended: a.buildAction("transfer",
                                  {target: "2600", transfer_type: "attended", takeback_dtmf: "*2"}),
          hold: a.buildAction("hold"),
          record: a.buildAction("record"),
          stored: a.buildAction("callflow", {id: "voicemail_prompt"}),
          pastedBody: a.buildAction("metaflow",
                                    {tree: '{"action": "metaflow", "data": {"module": "hangup"}}'}),
          noTarget: fails("transfer", {target: "  "}),
          badDigits: fails("dtmf", {digits: "12x"}),
          badJson: fails("metaflow", {tree: "{nope"}),
          notObject: fails("metaflow", {tree: "[1]"}),
          trail: a.runTrail({module: "play", children: {_: {module: "collect_dtmf", children: {
                   "1": {module: "transfer"}, "_": {module: "hangup"}}}}}, "children._.children.1"),
          words: [
            w.describeError(400, {data: {"data.target": {pattern: {message: "does not match"}}}}),
            w.describeError(401, {}),
            w.describeError(404, {data: ["x"]}),
            w.describeError(429, {data: {retry_after: 9}}, 7),
            w.describeError(502, {data: {text: "-ERR No such channel!"}}),
            w.describeError(503, {data: {node: "fs1"}}),
            w.describeError(0, null),
          ],
          record_words: w.describeSuccess("record", {}, {result: {recording_action: "start"}}),
        };
        """
    )
    assert result["hangup"] == {"method": "POST", "body": {"data": {"action": "hangup"}}}
    assert result["blind"]["body"]["data"] == {
        "action": "transfer",
        "target": "2600",
        "transfer_type": "blind",
        "leg": "peer",
    }
    assert result["attended"]["body"]["data"] == {
        "action": "transfer",
        "target": "2600",
        "transfer_type": "attended",
        "takeback_dtmf": "*2",
    }
    assert result["hold"] == {
        "method": "PUT",
        "body": {"action": "metaflow", "data": {"module": "hold_control", "data": {"action": "hold"}}},
    }
    assert result["record"]["body"] == {"data": {"action": "record_call"}}
    assert result["stored"]["body"]["data"] == {"module": "callflow", "data": {"id": "voicemail_prompt"}}
    assert result["pastedBody"]["body"] == {"action": "metaflow", "data": {"module": "hangup"}}
    assert result["noTarget"][0] == "target"
    assert result["badDigits"][0] == "digits"
    assert result["badJson"][0] == "tree" and "not valid JSON" in result["badJson"][1]
    assert result["notObject"][0] == "tree"
    assert [(n["module"], n["status"]) for n in result["trail"]] == [
        ("play", "done"),
        ("collect_dtmf", "done"),
        ("transfer", "current"),
        ("hangup", "ahead"),
    ]
    assert result["words"] == [
        "Not sent to FreeSWITCH: target: does not match.",
        "Your session has ended. Sign in again with your API key.",
        "This call has already ended.",
        "Too many attempts. Try again in 7 s.",
        "FreeSWITCH refused it: -ERR No such channel!",
        "The FreeSWITCH node (fs1) is not connected right now.",
        "eslchan could not be reached. Check the connection; the console keeps trying.",
    ]
    assert result["record_words"] == "Recording started."


# --- the picture in the README ------------------------------------------------------------------


def test_board_screenshot(browser, daemon, simulator, keys, tmp_path):
    """A board with a call in each state; with ESLCHAN_UPDATE_SCREENSHOT=1 it becomes the
    README's docs/console.png."""
    console = Console(browser, daemon).signed_in(keys[ADMIN])
    made = [
        (ALICE, "1002", {}),
        (CAROL, "1001", {}),
        (DAVE, "2001", {}),
        (BOB, "3001", {}),
        (ALICE, "2001", {"answered": False}),
        (DAVE, "1002", {"bridged": False}),
    ]
    calls = []
    for party, destination, kw in made:  # one after the other, for the nodes chart to show
        calls.append(call_from(simulator, party, destination=destination, **kw))
        gevent.sleep(0.6)
    simulator.api(f"uuid_hold {calls[3].a_uuid}")
    console.wait_row(calls[3].a_uuid, lambda r: r["state"] == "held")
    for call in calls:
        for uuid in call.uuids:
            console.wait_row(uuid)
    # let the nodes chart gather a few samples
    eventually(
        lambda: (
            console.js(
                "return document.querySelector('.spark-line')?.getAttribute('points').split(' ').length"
            )
            >= 5
        ),
        timeout=30,
    )
    shot = SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "console.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000  # a picture of the board, not a blank page
    assert console.errors() == []


# --- starting a call and listening in ---------------------------------------------------------


def test_start_a_call_from_the_console_and_see_it_ring_then_answer(browser, daemon, simulator, keys):
    """Acme may dial user/*@sim.local (the demo tenancy); the phone rings a while, then answers."""
    simulator.register("1001")
    simulator.switch.ring_seconds = 20.0  # 1 s of ringing at the simulator's speed (it rings 30)
    console = Console(browser, daemon).signed_in(keys[ACME])
    console.find("#new-call-open").click()
    eventually(lambda: console.js("return document.querySelector('#new-call').open"), timeout=SEEN)
    assert console.find("#new-call-account").text == "Acme"
    # a mistake is caught at once, nothing is sent
    console.find("#new-call-submit").click()
    eventually(lambda: "An endpoint is required" in console.find("#new-call-outcome").text, timeout=SEEN)
    # an endpoint outside the account's policy: the server's reason, in words
    console.find("#c-endpoint").send_keys("user/1001@globex.example")
    console.find("#new-call-submit").click()
    eventually(lambda: "Not allowed for this account" in console.find("#new-call-outcome").text, timeout=SEEN)
    assert "not one this account may dial" in console.find("#new-call-outcome").text
    assert not [c for c in simulator.commands if "originate" in c]

    field = console.find("#c-endpoint")
    field.clear()
    field.send_keys("user/1001@sim.local")
    console.find("#c-cid-name").send_keys("CRM")
    console.find("#c-cid-number").send_keys("5550100")
    console.find("#new-call-submit").click()
    eventually(lambda: not console.js("return document.querySelector('#new-call').open"), timeout=SEEN)
    eventually(lambda: "Calling user/1001@sim.local" in console.find("#toasts").text, timeout=SEEN)
    (originate,) = [c for c in simulator.commands if "originate" in c]
    uuid = originate.split("origination_uuid=")[1][:36]
    assert "origination_caller_id_name=CRM" in originate
    assert originate.endswith("}user/1001@sim.local &park()")
    # on the board while it rings, then answered; its details open by themselves
    console.wait_row(uuid, lambda r: r["state"] == "ringing")
    eventually(lambda: console.find("#drawer").is_displayed(), timeout=SEEN)
    console.wait_row(uuid, lambda r: r["state"] in ("answered", "talking"))
    runs = eventually(lambda: console.find("#drawer-runs").text, timeout=SEEN)
    assert "originate" in runs
    assert console.errors() == []


def test_a_supervisor_listens_in_from_the_details(browser, daemon, simulator, keys):
    simulator.register("1002")  # the supervisor's phone (dial template user/{id})
    console = Console(browser, daemon).signed_in(keys[ACME])
    call = call_from(simulator, ALICE, destination="2001")
    console.wait_row(call.a_uuid, lambda r: r["state"] == "talking")
    console.find(f'tr[data-uuid="{call.a_uuid}"] button[data-act="details"]').click()
    eventually(lambda: console.find("#drawer").is_displayed(), timeout=SEEN)
    console.find("#drawer details:nth-of-type(5) summary").click()
    console.find("#e-who").send_keys("1002")
    console.js("document.querySelector('#e-mode').value = 'whisper'")
    console.find('form[data-action="eavesdrop"] button[type=submit]').click()
    eventually(lambda: "once they answer they whisper" in console.find("#drawer-outcome").text, timeout=SEEN)
    (originate,) = [c for c in simulator.commands if "&eavesdrop(" in c]
    supervisor = originate.split("origination_uuid=")[1][:36]
    assert originate.endswith(f"}}user/1002 &eavesdrop({call.a_uuid})")
    eventually(lambda: (s := simulator.channel(supervisor)) and s.eavesdrop is not None, timeout=SEEN)
    assert simulator.channel(supervisor).eavesdrop.mode == "whisper"
    console.wait_row(supervisor)  # the supervisor's leg is the account's, on its board
    # a supervisor id with a realm that is not the account's: refused, in words, nothing sent
    field = console.find("#e-who")
    field.clear()
    field.send_keys("1002@globex.example")
    console.find('form[data-action="eavesdrop"] button[type=submit]').click()
    eventually(lambda: "Not allowed for this account" in console.find("#drawer-outcome").text, timeout=SEEN)
    assert len([c for c in simulator.commands if "&eavesdrop(" in c]) == 1
    assert console.errors() == []


def test_the_call_and_supervise_requests_the_console_builds(browser, daemon, keys):
    console = Console(browser, daemon).signed_in(keys[ACME])
    built = console.module(
        """
        const { buildCall, buildAction } = await load("actions.js");
        const out = {};
        out.call = buildCall({ endpoint: " user/1@acme.example ", caller_id_name: "CRM", timeout: "20",
                               callflow: "vip" });
        out.bare = buildCall({ endpoint: "user/1@acme.example", timeout: "" });
        for (const bad of [{}, { endpoint: "1001" }, { endpoint: "user/1", timeout: "0" },
                           { endpoint: "user/1", caller_id_number: "1 2" }]) {
          const key = JSON.stringify(bad);
          try { buildCall(bad); out[key] = "accepted"; } catch (e) { out[key] = e.field; }
        }
        out.listen = buildAction("eavesdrop", { supervisor_type: "user", supervisor: "u1", mode: "barge" });
        out.endpoint = buildAction("eavesdrop", { supervisor_type: "device",
                                                  supervisor: "user/9@acme.example" });
        try { buildAction("eavesdrop", { supervisor: "a b" }); } catch (e) { out.badWho = e.field; }
        return out;
        """
    )
    assert built["call"] == {"method": "PUT", "body": {"data": {
        "endpoint": "user/1@acme.example", "caller_id_name": "CRM", "timeout": 20,
        "metaflow": {"module": "callflow", "data": {"id": "vip"}}}}}
    assert built["bare"]["body"] == {"data": {"endpoint": "user/1@acme.example"}}
    assert built['{}'] == "endpoint" and built['{"endpoint":"1001"}'] == "endpoint"
    assert built['{"endpoint":"user/1","timeout":"0"}'] == "timeout"
    assert built['{"endpoint":"user/1","caller_id_number":"1 2"}'] == "caller_id_number"
    assert built["listen"]["body"]["data"] == {"action": "eavesdrop", "supervisor_id": "u1",
                                               "supervisor_type": "user", "mode": "barge"}
    assert built["endpoint"]["body"]["data"] == {"action": "eavesdrop", "endpoint": "user/9@acme.example",
                                                 "mode": "listen"}
    assert built["badWho"] == "supervisor"
