"""GET /v2/openapi.json documents every route; its examples and the app's real answers fit it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from test_api_app import KEYS, bridge_events

from eslchan.api import create_app
from eslchan.demo import ACME, ADMIN, GLOBEX, demo_config
from eslchan.registry import ChannelRegistry

pytestmark = pytest.mark.timeout(60)

BASE = "urn:eslchan:openapi"
METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture
def app(captures_dir):
    config = demo_config([], KEYS, system_wide=True)
    registry = ChannelRegistry(config.channels.mapping)
    for event in bridge_events(captures_dir):
        registry.apply("fs1", event)
    return create_app(config, registry, {}, None)


@pytest.fixture
def doc(app) -> dict[str, Any]:
    resp = app.test_client().get("/v2/openapi.json")
    assert resp.status_code == 200
    body = resp.json
    assert body["openapi"].startswith("3.1")
    return body


def validator(doc: dict[str, Any], pointer: str) -> Draft202012Validator:
    """A validator for the schema at ``pointer`` in ``doc``, with its "#/components/..." refs resolvable."""
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry = Registry().with_resource(BASE, resource)
    return Draft202012Validator({"$ref": f"{BASE}#{pointer}"}, registry=registry)


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Follow a component $ref; returns the node and its JSON pointer when it was a ref."""
    ref = node.get("$ref")
    if ref is None:
        return node, None
    pointer = ref.removeprefix("#")
    cur: Any = doc
    for part in pointer.strip("/").split("/"):
        cur = cur[part]
    return cur, pointer


def escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def flask_routes(app) -> dict[str, set[str]]:
    routes: dict[str, set[str]] = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes.setdefault(path, set()).update(m.lower() for m in rule.methods - {"HEAD", "OPTIONS"})
    return routes


def test_every_route_and_method_is_documented_and_nothing_else(app, doc):
    documented = {path: {m for m in item if m in METHODS} for path, item in doc["paths"].items()}
    assert flask_routes(app) == documented


def test_every_path_parameter_is_declared(doc):
    for path, item in doc["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            declared = set()
            for param in op.get("parameters", []):
                param, _ = resolve(doc, param)
                if param["in"] == "path":
                    declared.add(param["name"])
            assert declared == names, (path, method)


def test_every_operation_documents_errors_and_envelope(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("summary"), (path, method)
            assert op["responses"], (path, method)
            if op.get("security") == []:
                continue
            # every authenticated call can meet these
            for code in ("400", "401", "403", "405"):
                assert code in op["responses"], (path, method, code)
    for name in ("Envelope", "ErrorEnvelope", "ValidationErrors", "Channel", "ChannelDetail"):
        assert name in doc["components"]["schemas"]
    for name in (
        "FaultyRequest",
        "MethodNotAllowed",
        "TooLarge",
        "FreeswitchError",
        "Unavailable",
        "Timeout",
    ):
        assert name in doc["components"]["responses"]


def examples(doc: dict[str, Any]) -> Iterator[tuple[str, str, Any]]:
    """(where, schema pointer, example) for every example in the document."""

    def media(content: dict[str, Any], base: str) -> Iterator[tuple[str, str, Any]]:
        for mtype, entry in content.items():
            pointer = f"{base}/content/{escape(mtype)}/schema"
            if "example" in entry:
                yield pointer, pointer, entry["example"]
            for name, ex in entry.get("examples", {}).items():
                yield f"{pointer}:{name}", pointer, ex["value"]

    for path, item in doc["paths"].items():
        for method, op in item.items():
            base = f"/paths/{escape(path)}/{method}"
            if "requestBody" in op:
                yield from media(op["requestBody"]["content"], f"{base}/requestBody")
            for code, resp in op["responses"].items():
                if "$ref" not in resp:
                    yield from media(resp.get("content", {}), f"{base}/responses/{code}")
    for name, resp in doc["components"]["responses"].items():
        yield from media(resp.get("content", {}), f"/components/responses/{name}")
    for name, param in doc["components"]["parameters"].items():
        if "example" in param:
            pointer = f"/components/parameters/{name}/schema"
            yield pointer, pointer, param["example"]


def test_every_documented_example_validates(doc):
    found = list(examples(doc))
    assert len(found) > 30
    for where, pointer, example in found:
        errors = list(validator(doc, pointer).iter_errors(example))
        assert not errors, (where, [e.message for e in errors])


def test_schemas_reject_what_they_should(doc):
    """The schemas are not vacuous: a malformed envelope or channel fails them."""
    envelope = validator(doc, "/components/schemas/Envelope")
    assert not envelope.is_valid({"data": []})
    error = validator(doc, "/components/schemas/ErrorEnvelope")
    ok = doc["components"]["responses"]["Forbidden"]["content"]["application/json"]["example"]
    assert error.is_valid(ok)
    assert not error.is_valid({**ok, "error": "forbidden"})
    channel = validator(doc, "/components/schemas/Channel")
    assert not channel.is_valid({"uuid": "nope", "answered": True, "timestamp": 1, "node": "fs1"})


def response_schema(doc: dict[str, Any], path: str, method: str, status: int) -> str:
    op = doc["paths"][path][method]
    resp = op["responses"][str(status)]
    resp, pointer = resolve(doc, resp)
    base = pointer or f"/paths/{escape(path)}/{method}/responses/{status}"
    assert "application/json" in resp["content"], (path, method, status)
    return f"{base}/content/application~1json/schema"


def test_real_answers_match_their_documentation(app, doc):
    """Answers of the app, success and error, validate against what the document says for them."""
    client = app.test_client()
    key = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[ACME]}})
    admin = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[ADMIN]}}).json["auth_token"]
    tok = key.json["auth_token"]
    registry = app.extensions["eslchan"].registry
    uuid = registry.for_account(ACME)[0].uuid
    foreign = registry.for_account(GLOBEX)[0].uuid
    h = {"X-Auth-Token": tok}
    cases = [
        ("/v2/api_auth", "put", key),
        (
            "/v2/api_auth",
            "put",
            client.put("/v2/api_auth", json={"data": {"api_key": "wrong-0123456789abc"}}),
        ),
        ("/v2/api_auth", "put", client.put("/v2/api_auth", data=b"{")),
        ("/v2/channels", "get", client.get("/v2/channels", headers={"X-Auth-Token": admin})),
        ("/v2/channels", "get", client.get("/v2/channels", headers=h)),
        ("/v2/accounts/{account_id}/channels", "get", client.get(f"/v2/accounts/{ACME}/channels", headers=h)),
        (
            "/v2/accounts/{account_id}/channels",
            "get",
            client.get(f"/v2/accounts/{GLOBEX}/channels", headers=h),
        ),
        ("/v2/accounts/{account_id}/channels", "get", client.get(f"/v2/accounts/{ACME}/channels")),
        (
            "/v2/accounts/{account_id}/users/{user_id}/channels",
            "get",
            client.get(f"/v2/accounts/{ACME}/users/user1/channels", headers=h),
        ),
        (
            "/v2/accounts/{account_id}/devices/{device_id}/channels",
            "get",
            client.get(f"/v2/accounts/{ACME}/devices/dev1/channels", headers=h),
        ),
        (
            "/v2/accounts/{account_id}/channels/{channel_uuid}",
            "get",
            client.get(f"/v2/accounts/{ACME}/channels/{uuid}", headers=h),
        ),
        (
            "/v2/accounts/{account_id}/channels/{channel_uuid}",
            "get",
            client.get(f"/v2/accounts/{ACME}/channels/{foreign}", headers=h),
        ),
        (
            "/v2/accounts/{account_id}/channels/{channel_uuid}",
            "post",
            client.post(f"/v2/accounts/{ACME}/channels/{uuid}", headers=h, json={"data": {}}),
        ),
        (
            "/v2/accounts/{account_id}/channels/{channel_uuid}",
            "post",
            client.post(f"/v2/accounts/{ACME}/channels/{uuid}", headers=h, data=b"x" * 70_000),
        ),
        ("/health", "get", client.get("/health")),
    ]
    for path, method, resp in cases:
        pointer = response_schema(doc, path, method, resp.status_code)
        errors = list(validator(doc, pointer).iter_errors(resp.json))
        assert not errors, (path, method, resp.status_code, [e.message for e in errors])
    # a method the path does not have
    resp = client.delete(f"/v2/accounts/{ACME}/channels", headers=h)
    pointer = response_schema(doc, "/v2/accounts/{account_id}/channels", "get", 405)
    assert validator(doc, pointer).is_valid(resp.json)
    # an unknown path
    resp = client.get("/v2/nothing/here")
    assert validator(doc, "/components/responses/FaultyRequest/content/application~1json/schema").is_valid(
        resp.json
    )


def test_webhooks_routes_without_webhooks_answer_as_documented(app, doc):
    """This app has no [webhooks]: every webhooks operation, the account's and those for any
    token, answers a documented 404 once authenticated, and a documented 401 before."""
    client = app.test_client()
    tok = client.put("/v2/api_auth", json={"data": {"api_key": KEYS[ACME]}}).json["auth_token"]
    values = {"account_id": ACME, "webhook_id": "0" * 32, "sample_id": "webhooks_channel_create"}
    operations = [
        (path, method)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "webhooks" in op.get("tags", ())
    ]
    assert {p for p, _ in operations} >= {
        "/v2/webhooks", "/v2/webhooks/samples", "/v2/webhooks/samples/{sample_id}",
        "/v2/accounts/{account_id}/webhooks/attempts", "/v2/accounts/{account_id}/descendants/webhooks",
    }  # fmt: skip
    for path, method in operations:
        url = re.sub(r"{([^}]+)}", lambda m: values[m.group(1)], path)
        body = {"data": {}} if method in ("put", "post", "patch") else None
        for headers, status in (({"X-Auth-Token": tok}, 404), ({}, 401)):
            resp = client.open(url, method=method.upper(), json=body, headers=headers)
            assert resp.status_code == status, (path, method, resp.json)
            pointer = response_schema(doc, path, method, status)
            problems = [e.message for e in validator(doc, pointer).iter_errors(resp.json)]
            assert not problems, (path, method, status, problems)


def test_openapi_document_supports_304(app):
    client = app.test_client()
    first = client.get("/v2/openapi.json")
    assert client.get("/v2/openapi.json", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304


def test_every_reference_resolves(doc):
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert len(refs) > 50
    for ref in refs:
        assert ref.startswith("#/"), ref
        resolve(doc, {"$ref": ref})  # KeyError if dangling
