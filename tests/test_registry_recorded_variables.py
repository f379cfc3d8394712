"""A variable eslchan set (FreeSWITCH fires no event for uuid_setvar) shows in
custom_channel_vars at once, and events sort it out safely afterwards."""

from eslchan.config import VariableMapping
from eslchan.registry import ChannelRegistry
from eslchan.registry.registry import RECORDED_VARIABLE_SECONDS

UUID = "11111111-2222-3333-4444-555555555555"


def event(seq: int, **variables: str) -> dict:
    ev = {"Event-Name": "CHANNEL_EXECUTE_COMPLETE", "Unique-ID": UUID, "Core-UUID": "core-1",
          "Event-Sequence": str(seq), "variable_eslchan_account_id": "a" * 32}
    ev.update({f"variable_{k}": v for k, v in variables.items()})
    return ev


def world():
    now = [1000.0]
    registry = ChannelRegistry(VariableMapping(), clock=lambda: now[0])
    registry.apply("fs1", {**event(1), "Event-Name": "CHANNEL_CREATE"})
    return registry, now


def custom(registry) -> dict:
    return registry.get("fs1", UUID).detail(0)["custom_channel_vars"]


def test_shown_at_once_and_kept_over_events_from_before_the_set():
    registry, now = world()
    registry.record_variable("fs1", UUID, "eslchan_note", "vip")
    assert custom(registry)["note"] == "vip"
    registry.apply("fs1", event(2))  # generated before the set: no value yet
    assert custom(registry)["note"] == "vip"
    registry.apply("fs1", event(3, eslchan_note="vip"))  # the switch shows it now
    assert registry.get("fs1", UUID).var_pending is None
    registry.apply("fs1", event(4, eslchan_note="changed by the dialplan"))
    assert custom(registry)["note"] == "changed by the dialplan"  # events decide again


def test_after_a_while_events_decide_again():
    registry, now = world()
    registry.record_variable("fs1", UUID, "eslchan_note", "vip")
    now[0] += RECORDED_VARIABLE_SECONDS + 1
    registry.apply("fs1", event(2, eslchan_note="other"))
    assert custom(registry)["note"] == "other"


def test_an_unset_and_a_variable_not_shown():
    registry, now = world()
    registry.apply("fs1", event(2, eslchan_note="vip"))
    registry.record_variable("fs1", UUID, "eslchan_note", None)
    assert "note" not in custom(registry)
    registry.apply("fs1", event(3, eslchan_note="vip"))  # from before the unset
    assert "note" not in custom(registry)
    registry.record_variable("fs1", UUID, "hold_music", "local_stream://moh")  # not a custom var
    registry.record_variable("fs1", "00000000-0000-0000-0000-000000000000", "eslchan_x", "y")  # unknown
    assert set(custom(registry)) == {"account_id"}
