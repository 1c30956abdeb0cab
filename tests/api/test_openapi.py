"""The OpenAPI description is valid, and the live app keeps to it (Schemathesis, real gunicorn)."""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app.api.openapi import openapi_document
from tests.support.server import GunicornServer

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("openapi-server")]

# What the description promises: no 5xx, only documented status codes, content types and
# bodies. (Schema-valid but semantically wrong input, e.g. a cron expression that does not
# parse, is refused with 400 by design, so "positive data acceptance" is not checked.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_the_description_is_valid_openapi_3_1_and_covers_every_api_route(app, client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document == openapi_document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    described = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    routes = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1")), method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.") and rule.endpoint != "api.openapi"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes == described


@pytest.fixture(scope="module")
def live_api(tmp_path_factory):
    server = GunicornServer(tmp_path_factory.mktemp("openapi") / "instance", workers=2).start()
    yield server
    server.stop()


# The document the app serves (the first test proves it is what /api/v1/openapi.json answers);
# built here because schemathesis.pytest.from_fixture does not work with pytest 9.
schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_of_the_live_app_matches_the_description(case, live_api):
    case.call_and_validate(base_url=live_api.url + "/api/v1", checks=CHECKS)
