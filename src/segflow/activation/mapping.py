"""Per-dataset identifier mapping: which columns hold email, phone, names...

Until a user sets one, the mapping is detected from the dataset's header
names (the same detection the import's quality summary uses). A stored
mapping names columns that must exist in the dataset; it is checked when it
is set and again when it is used, since columns can only be added, never
renamed, but a dataset can be deleted and re-created.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from segflow import outbox
from segflow.activation.identifiers import MAPPED_COLUMNS, Mapping, normalise_region
from segflow.datasets import Dataset, require
from segflow.db.engine import Database
from segflow.db.schema import identifier_maps
from segflow.errors import InvalidInput
from segflow.ingest import consent, phones, quality

_KIND_TO_FIELD = {
    quality.EMAIL: "email",
    quality.PHONE: "phone",
    quality.FIRST_NAME: "first_name",
    quality.LAST_NAME: "last_name",
    quality.COUNTRY: "country",
    quality.POSTAL_CODE: "postal_code",
}


def detect(dataset: Dataset) -> Mapping:
    """The mapping a dataset's header names suggest (first column of each kind)."""
    mapping = Mapping()
    for column in dataset.columns:
        kind = quality.detect_kind(column.name)
        if kind is None:
            continue
        name = _KIND_TO_FIELD[kind]
        if getattr(mapping, name) is None:
            setattr(mapping, name, column.name)
    for column in dataset.columns:
        signal = consent.detect_consent(column.name)
        if signal is not None and getattr(mapping, signal) is None:
            setattr(mapping, signal, column.name)
    return mapping


def mapping_for(conn: Connection, dataset: Dataset) -> tuple[Mapping, bool]:
    """The dataset's mapping, and whether a user set it (False: detected)."""
    stored = conn.execute(
        sa.select(identifier_maps.c.mapping).where(identifier_maps.c.dataset_id == dataset.id)
    ).scalar()
    if stored is None:
        return detect(dataset), False
    return _from_json(dataset, stored), True


def _from_json(dataset: Dataset, data: dict[str, Any]) -> Mapping:
    mapping = Mapping(default_region=str(data.get("default_region") or phones.DEFAULT_REGION))
    for name in MAPPED_COLUMNS:
        value = data.get(name)
        if value is not None:
            column = dataset.column(str(value))
            # A column that vanished (dataset re-created) maps to nothing.
            setattr(mapping, name, column.name if column is not None else None)
    return mapping


def set_mapping(
    db: Database,
    dataset_name: str,
    changes: dict[str, str | None],
    now: dt.datetime,
) -> Mapping:
    """Change some entries of a dataset's mapping; ``""`` or None clears one.

    ``changes`` keys are the names in ``MAPPED_COLUMNS`` plus
    ``default_region``. Entries not named keep their current value (stored or
    detected), so the first change also freezes the detected rest.
    """
    with db.write() as conn:
        dataset = require(conn, dataset_name, name_others=False)
        mapping, _ = mapping_for(conn, dataset)
        before = mapping.as_dict()
        for name, value in changes.items():
            if name == "default_region":
                mapping.default_region = _phone_region(value)
                continue
            if name not in MAPPED_COLUMNS:
                raise InvalidInput(f"unknown mapping entry {name!r}")
            if not value:
                setattr(mapping, name, None)
                continue
            column = dataset.column(value)
            if column is None:
                names = ", ".join(c.name for c in dataset.columns)
                raise InvalidInput(
                    f"dataset {dataset.name!r} has no column {value!r} (columns: {names})"
                )
            setattr(mapping, name, column.name)
        if mapping.as_dict() != before:
            outbox.mapping_changed(conn, dataset.id)
        values = {"mapping": mapping.as_dict(), "updated_at": now}
        updated = conn.execute(
            sa.update(identifier_maps)
            .where(identifier_maps.c.dataset_id == dataset.id)
            .values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(sa.insert(identifier_maps).values(dataset_id=dataset.id, **values))
    return mapping


def _phone_region(value: str | None) -> str:
    """A default phone region: a country (code or name) with a phone numbering plan."""
    region = normalise_region(value or "")
    if region is None:
        raise InvalidInput(
            f"default region must be a country: an ISO 3166-1 alpha-2 code such as US or GB, "
            f"or its name, got {value!r}"
        )
    if region not in phones.PHONE_REGIONS:
        raise InvalidInput(
            f"default region {region} has no telephone numbering plan of its own "
            f"(phonenumbers knows none): choose the country whose numbers its phones use"
        )
    return region


def show_mapping(db: Database, dataset_name: str) -> tuple[Mapping, bool]:
    with db.read() as conn:
        dataset = require(conn, dataset_name, name_others=False)
        return mapping_for(conn, dataset)
