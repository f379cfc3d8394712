"""Plain events decode every value on its own, even though the values go through one unquote."""

from urllib.parse import quote

from eslchan.esl.parser import decode_plain_event


def encode(value: str) -> str:
    return quote(value, safe="")


def test_each_value_decodes_exactly_and_an_encoded_newline_stays_in_its_value():
    values = {
        "Event-Name": "CHANNEL_EXECUTE",
        "variable_a": "line1\nFake-Header: injected\n\nEvent-Name: FORGED",
        "variable_b": "Zoë 東京",
        "variable_c": "a+b=c?d#e \"q\" 'x' <t> [y] {z}",
        "variable_d": "plain",
    }
    text = "\n".join(f"{k}: {encode(v)}" for k, v in values.items()) + "\n\n"
    assert decode_plain_event(text) == values


def test_an_encoded_nul_does_not_split_values():
    values = {"Event-Name": "CUSTOM", "variable_x": "a\x00b", "variable_y": "c d", "variable_z": "e%f"}
    text = "\n".join(f"{k}: {encode(v)}" for k, v in values.items()) + "\n\n"
    assert decode_plain_event(text) == values


def test_freeswitch_pass_through_of_percent_hex_is_decoded_like_freeswitch_clients_do():
    # FreeSWITCH leaves an existing %XX alone: "100% off %41%42 %zz" arrives like this (capture 12)
    text = "Event-Name: X\nvariable_esl_pct: 100%25%20off%20%41%42%20%25zz\nvariable_n: %0A\n\n"
    event = decode_plain_event(text)
    assert event["variable_esl_pct"] == "100% off AB %zz"
    assert event["variable_n"] == "\n"
