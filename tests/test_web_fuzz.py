"""schemathesis over the whole API: no 500, and every answer as the OpenAPI document says."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from segflow import datasets, demo, segments
from segflow.activation import destinations, links
from segflow.config import Settings
from segflow.db import Database
from segflow.web.app import create_app
from tests.sync_helpers import NOW


@pytest.fixture
def api_schema(db: Database, tmp_path: Path) -> Any:
    # Real objects behind the ids the generator will try (1, 2, ...).
    data = demo.csv_bytes(50, seed=3)
    datasets.import_csv(
        db, io.BytesIO(data), datasets.ImportOptions("customers", key="id"), source="c", now=NOW
    )
    rule = {"conditions": [{"field": "state", "operator": "equals", "value": "CA"}]}
    segments.create_segment(db, name="ca", dataset="customers", rules_json=rule, now=NOW)
    path = str(tmp_path / "out.jsonl")
    destinations.add_destination(db, "dry", destinations.FILE, {"path": path}, NOW)
    links.link(db, "ca", "dry", NOW)
    app = create_app(db, Settings(max_upload_bytes=1_000_000), background=False)
    # The event stream never ends by itself: it has its own tests.
    return schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/stream")


SETTINGS = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)


def test_no_input_makes_a_server_error(api_schema: Any) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @SETTINGS
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            # No 500, and status, content type and body as the OpenAPI document says.
            # A schema-valid request may still be refused: a file's content, a
            # rule's meaning and a dataset's columns are beyond what a schema says.
            response = case.call_and_validate(excluded_checks=[positive_data_acceptance])
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"code", "message", "details"}

        check()
