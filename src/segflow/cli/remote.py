"""The CLI talking to a segflow server (``--server URL``) instead of a database.

With ``--server`` (or ``SEGFLOW_SERVER``) the commands that a person uses day
to day go through the server's API as the token's user, in the token's
workspace (``--token`` or ``SEGFLOW_TOKEN``); they print what they print when
working on the database directly. Operator commands (serve, worker, users,
tokens, secrets...) only work on the database.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from segflow.cli import activation
from segflow.cli import output as show
from segflow.cli.args import rules_arg
from segflow.cli.datasets import sample_bytes
from segflow.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    SegflowError,
    Throttled,
)

#: Imports may take a while on the server; everything else is quick.
TIMEOUT = httpx.Timeout(30.0, read=3600.0)


class Remote:
    """A segflow server's API, as one token's user sees it."""

    def __init__(self, url: str, token: str | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"--server {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SegflowError(f"cannot reach {self.url}: {type(exc).__name__}") from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        error = (body or {}).get("error") if isinstance(body, dict) else None
        message = error["message"] if error else f"HTTP {response.status_code}"
        status = response.status_code
        if status == 401:
            raise NotAuthenticated(f"{self.url}: {message} (give --token or SEGFLOW_TOKEN)")
        if status == 429:
            raise Throttled(message, int(response.headers.get("Retry-After", "60")))
        kind = {403: Forbidden, 404: NotFound, 409: Conflict}.get(status)
        if kind is not None:
            raise kind(message)
        if status >= 500:
            raise SegflowError(f"{self.url} failed: {message}")
        raise InvalidInput(message)

    def segment(self, name: str) -> dict[str, Any]:
        for found in self.call("GET", "/api/segments"):
            if found["name"] == name:
                return dict(found)
        raise NotFound(f"no segment named {name!r}")


def _q(value: str) -> str:
    return quote(value, safe="")


# ---------------------------------------------------------------- commands


def remote_import(args: argparse.Namespace, remote: Remote) -> int:
    if args.delimiter or args.encoding.lower().replace("-", "") != "utf8":
        raise InvalidInput("--delimiter and --encoding work on the database only (not --server)")
    stream: BinaryIO
    if args.path == "-":
        stream, name = sys.stdin.buffer, "stdin.csv"
    else:
        try:
            stream = open(args.path, "rb")
        except OSError as exc:
            raise SegflowError(f"cannot open {args.path}: {exc.strerror}") from None
        name = os.path.basename(args.path)
    form = {"mode": args.mode, "encoding": args.encoding, **({"key": args.key} if args.key else {})}
    if args.delimiter:
        form["delimiter"] = args.delimiter
    if args.confirm_delete:
        form["confirm_delete"] = "true"
    if args.delete_limit is not None:
        form["delete_limit"] = str(args.delete_limit)
    sample = sample_bytes(args.sample_mb, args.dry_run)
    if sample is not None:
        form["sample_mb"] = str(args.sample_mb)
        # The server cuts the sample at a row boundary: it needs no more than that.
        with stream if stream is not sys.stdin.buffer else contextlib.nullcontext():
            stream = io.BytesIO(stream.read(sample + 1))
    try:
        summary = remote.call(
            "POST",
            f"/api/datasets/{_q(args.dataset)}/imports" + ("/preview" if args.dry_run else ""),
            files={"file": (name, stream, "text/csv")},
            data=form,
        )
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if args.json:
        show.emit_json(summary)
    else:
        (show.import_preview if summary.get("dry_run") else show.import_summary)(summary)
        for note in summary.get("notes", []):
            print(f"  note: {note}")
    return 0


def remote_datasets_list(args: argparse.Namespace, remote: Remote) -> int:
    show.datasets(remote.call("GET", "/api/datasets"), args.json)
    return 0


def remote_datasets_show(args: argparse.Namespace, remote: Remote) -> int:
    info = remote.call("GET", f"/api/datasets/{_q(args.name)}")
    if args.sample:
        page = remote.call(
            "GET", f"/api/datasets/{_q(args.name)}/records", params={"limit": args.sample}
        )
        info["sample"] = [item["record"] for item in page["items"]]
    show.dataset(info, args.json)
    return 0


def remote_datasets_delete(args: argparse.Namespace, remote: Remote) -> int:
    info = remote.call("GET", f"/api/datasets/{_q(args.name)}")
    remote.call("DELETE", f"/api/datasets/{_q(args.name)}")
    print(f"deleted dataset {info['name']!r} ({info['records']:,} records)")
    return 0


def remote_datasets_retype(args: argparse.Namespace, remote: Remote) -> int:
    changed = remote.call(
        "PUT",
        f"/api/datasets/{_q(args.name)}/columns/{_q(args.column)}/type",
        json={"type": args.type, **({"format": args.format} if args.format else {})},
    )
    show.retyped(changed, args.json)
    return 0


def remote_segments_create(args: argparse.Namespace, remote: Remote) -> int:
    body = {"name": args.name, "dataset": args.dataset, "rules": rules_arg(args.rules)}
    show.created_segment(remote.call("POST", "/api/segments", json=body), args.json)
    return 0


def remote_segments_edit(args: argparse.Namespace, remote: Remote) -> int:
    if args.rules is None and args.rename is None:
        raise InvalidInput("nothing to change: give --rules and/or --rename")
    before = remote.segment(args.name)
    body: dict[str, Any] = {}
    if args.rules is not None:
        body["rules"] = rules_arg(args.rules)
    if args.rename is not None:
        body["name"] = args.rename
    edited = remote.call("PATCH", f"/api/segments/{before['id']}", json=body)
    show.edited_segment(edited, before["member_count"], args.json)
    return 0


def remote_segments_list(args: argparse.Namespace, remote: Remote) -> int:
    params = {"dataset": args.dataset} if args.dataset else {}
    show.segments(remote.call("GET", "/api/segments", params=params), args.json)
    return 0


def remote_segments_show(args: argparse.Namespace, remote: Remote) -> int:
    segment = remote.segment(args.name)
    recent = remote.call(
        "GET", f"/api/segments/{segment['id']}/events", params={"limit": args.events}
    )
    show.segment(segment, recent["items"], args.json)
    return 0


def remote_segments_members(args: argparse.Namespace, remote: Remote) -> int:
    params: dict[str, Any] = {"limit": min(args.limit, 1000)}
    if args.after is not None:
        params["cursor"] = args.after
    segment = remote.segment(args.name)
    page = remote.call("GET", f"/api/segments/{segment['id']}/members", params=params)
    show.members(page["items"], page["next_cursor"], args.json)
    return 0


def remote_segments_events(args: argparse.Namespace, remote: Remote) -> int:
    params: dict[str, Any] = {"limit": min(args.limit, 1000)}
    if args.before is not None:
        params["cursor"] = args.before
    segment = remote.segment(args.name)
    page = remote.call("GET", f"/api/segments/{segment['id']}/events", params=params)
    show.events(page["items"], page["next_cursor"], args.json)
    return 0


def remote_segments_delete(args: argparse.Namespace, remote: Remote) -> int:
    segment = remote.segment(args.name)
    remote.call("DELETE", f"/api/segments/{segment['id']}")
    print(f"deleted segment {segment['name']!r} ({segment['member_count']:,} members)")
    return 0


def remote_segments_explain(args: argparse.Namespace, remote: Remote) -> int:
    segment = remote.segment(args.name)
    result = remote.call("GET", f"/api/segments/{segment['id']}/explain/{_q(args.key)}")
    show.explanation(result, args.key, args.json)
    return 0


def remote_records_forget(args: argparse.Namespace, remote: Remote) -> int:
    report = remote.call("DELETE", f"/api/datasets/{_q(args.dataset)}/records/{_q(args.key)}")
    show.forgotten(report, args.key, args.json)
    return 0


def _destination(remote: Remote, name: str) -> dict[str, Any]:
    for found in remote.call("GET", "/api/destinations"):
        if found["name"] == name:
            return dict(found)
    raise NotFound(f"no destination named {name!r}")


def remote_links_show(args: argparse.Namespace, remote: Remote) -> int:
    state = remote.call(
        "GET",
        f"{_link_path(remote, args.segment, args.destination)}/uploads",
        # The API pages uploads by at most 200, the most anyone reads at once.
        params={"limit": max(1, min(args.limit, 200))},
    )
    activation.show_link(state, args.json)
    return 0


def remote_links(args: argparse.Namespace, remote: Remote) -> int:
    activation.show_links(remote.call("GET", "/api/links"), args.json)
    return 0


def _link_path(remote: Remote, segment: str, destination: str) -> str:
    found = remote.segment(segment)
    return f"/api/segments/{found['id']}/links/{_destination(remote, destination)['id']}"


def remote_links_failed(args: argparse.Namespace, remote: Remote) -> int:
    path = _link_path(remote, args.segment, args.destination)
    # The API answers at most 1,000 a call: more than anyone reads in a terminal.
    rows = remote.call("GET", f"{path}/failed", params={"limit": max(1, min(args.limit, 1000))})
    activation.show_failed(rows, args.json)
    return 0


def remote_links_resume(args: argparse.Namespace, remote: Remote) -> int:
    path = _link_path(remote, args.segment, args.destination)
    state = remote.call("POST", f"{path}/resume", json={"retry_failed": args.retry_failed})
    activation.show_resumed(state["segment"], state["destination"], args.retry_failed)
    return 0


def remote_destinations_lists(args: argparse.Namespace, remote: Remote) -> int:
    destination = _destination(remote, args.name)
    answer = remote.call("GET", f"/api/destinations/{destination['id']}/lists")
    activation.show_lists(answer, args.json)
    return 0


def remote_destinations_credentials(args: argparse.Namespace, remote: Remote) -> int:
    secret = activation.new_credentials(args)
    destination = _destination(remote, args.name)
    updated = remote.call(
        "PUT", f"/api/destinations/{destination['id']}/credentials", json={"credentials": secret}
    )
    paused = updated.pop("paused_links")
    if args.json:
        show.emit_json(updated)
    else:
        activation.replaced_credentials(updated, paused)
    return 0


RemoteCommand = Callable[[argparse.Namespace, Remote], int]

#: Commands that also work through a server, by (command, action).
COMMANDS: dict[tuple[str, str | None], RemoteCommand] = {
    ("import", None): remote_import,
    ("datasets", "list"): remote_datasets_list,
    ("datasets", "show"): remote_datasets_show,
    ("datasets", "retype"): remote_datasets_retype,
    ("datasets", "delete"): remote_datasets_delete,
    ("segments", "create"): remote_segments_create,
    ("segments", "edit"): remote_segments_edit,
    ("segments", "list"): remote_segments_list,
    ("segments", "show"): remote_segments_show,
    ("segments", "members"): remote_segments_members,
    ("segments", "events"): remote_segments_events,
    ("segments", "delete"): remote_segments_delete,
    ("segments", "explain"): remote_segments_explain,
    ("records", "forget"): remote_records_forget,
    ("links", None): remote_links,
    ("links", "show"): remote_links_show,
    ("links", "failed"): remote_links_failed,
    ("links", "resume"): remote_links_resume,
    ("destinations", "lists"): remote_destinations_lists,
    ("destinations", "credentials"): remote_destinations_credentials,
}


def run(args: argparse.Namespace, server: str, token: str | None) -> int:
    key = (args.command, getattr(args, "action", None))
    command = COMMANDS.get(key)
    if command is None:
        name = " ".join(k for k in key if k)
        raise InvalidInput(
            f"'segflow {name}' works on the database only: run it without --server "
            "(and SEGFLOW_SERVER unset) where the database is reachable"
        )
    remote = Remote(server, token)
    try:
        return command(args, remote)
    finally:
        remote.close()
