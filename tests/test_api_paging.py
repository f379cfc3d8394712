"""Kazoo-style paging of listings: page_size and start_key/next_start_key, over real HTTP."""

import pytest
from conftest import eventually

from eslchan.demo import ACME, PARTIES

pytestmark = pytest.mark.timeout(60)
BASE = f"/v2/accounts/{ACME}/channels"


@pytest.fixture
def calls(simulator, daemon):
    alice = next(p for p in PARTIES if p.account_id == ACME)
    for _ in range(4):
        simulator.create_call(account_id=ACME, user_id=alice.user_id, device_id=alice.device_id)
    eventually(lambda: len(daemon.registry.for_account(ACME)) == 8)


def test_pages_cover_the_listing_once_in_order(calls, http):
    token = http.token(ACME)
    whole = http.get(BASE, token=token).json
    assert "next_start_key" not in whole and len(whole["data"]) == 8
    seen, start = [], None
    for _ in range(10):
        query = "?page_size=3" + (f"&start_key={start}" if start else "")
        page = http.get(BASE + query, token=token).json
        assert page["page_size"] == len(page["data"]) <= 3
        seen += [row["uuid"] for row in page["data"]]
        start = page.get("next_start_key")
        if start is None:
            break
    assert seen == [row["uuid"] for row in whole["data"]]


@pytest.mark.parametrize(
    "query, field",
    [
        ("?page_size=0", "page_size"),
        ("?page_size=abc", "page_size"),
        ("?page_size=10001", "page_size"),
        ("?page_size=%C2%B2", "page_size"),  # "²" passes str.isdigit(), not int()
        ("?page_size=%D9%A3", "page_size"),  # an Arabic-Indic 3
        ("?start_key=00001795701657000000-" + "a" * 8, "start_key"),
        ("?page_size=2&start_key=%0Aapi%20system", "start_key"),
    ],
)
def test_bad_paging_parameters_are_a_400_naming_the_field(calls, http, query, field):
    resp = http.get(BASE + query, token=http.token(ACME))
    assert resp.status == 400
    assert field in resp.json["data"]
