"""schemathesis over the whole API: no 500, and every answer as the OpenAPI document says."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from segflow import auth, demo, ingest, segments
from segflow.activation import destinations, links
from segflow.config import Settings
from segflow.db import Database
from segflow.web.app import create_app
from tests.sync_helpers import NOW


@pytest.fixture(params=["local", "team"])
def api_schema(db: Database, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    # Real objects behind the ids the generator will try (1, 2, ...).
    data = demo.csv_bytes(50, seed=3)
    ingest.import_csv(
        db, io.BytesIO(data), ingest.ImportOptions("customers", key="id"), source="c", now=NOW
    )
    rule = {"conditions": [{"field": "state", "operator": "equals", "value": "CA"}]}
    segments.create_segment(db, name="ca", dataset="customers", rules_json=rule, now=NOW)
    path = str(tmp_path / "out.jsonl")
    destinations.add_destination(db, "dry", destinations.FILE, {"path": path}, NOW)
    links.link(db, "ca", "dry", NOW)
    team = request.param == "team"
    headers: dict[str, str] = {}
    if team:
        # The generator's ids also hit another workspace's objects: 404s.
        other = db.in_workspace(auth.add_workspace(db, "other", NOW))
        ingest.import_csv(
            other, io.BytesIO(data), ingest.ImportOptions("theirs", key="id"), source="c", now=NOW
        )
        segments.create_segment(other, name="theirs", dataset="theirs", rules_json=rule, now=NOW)
        auth.add_user(db, "fuzz", "fuzzing password", NOW, member_of=["default"])
        headers["Authorization"] = "Bearer " + auth.create_token(db, "fuzz", "default", "f", NOW)[1]
    app = create_app(db, Settings(max_upload_bytes=1_000_000, auth=team), background=False)
    # The event stream never ends by itself: it has its own tests.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/stream")
    return schema, headers


SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def test_no_input_makes_a_server_error(api_schema: Any) -> None:
    schema, headers = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            # No 500, and status, content type and body as the OpenAPI document says.
            # A schema-valid request may still be refused: a file's content, a
            # rule's meaning and a dataset's columns are beyond what a schema says.
            response = case.call_and_validate(
                headers=headers, excluded_checks=[positive_data_acceptance]
            )
            if headers:  # the token is honoured: only a sign-in can be refused as 401
                assert response.status_code != 401 or case.path == "/api/auth/login"
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "details"}

        check()
