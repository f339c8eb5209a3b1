"""CLI commands for activation: destinations, identifier mapping, links, sync."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from segflow import forget
from segflow.activation import destinations, links, mapping, platforms, sync, uploads
from segflow.activation.google import userlists
from segflow.activation.identifiers import LISTED_COLUMNS, MAPPED_COLUMNS
from segflow.activation.meta import config as meta_config
from segflow.cli import output as show
from segflow.cli.output import emit_json, plural
from segflow.config import Settings
from segflow.db import Database
from segflow.db.engine import utcnow
from segflow.errors import InvalidInput, SegflowError


def _read_json_file(path: str, what: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SegflowError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # The message names the position only: the file holds secrets.
        raise InvalidInput(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} {path} must hold a JSON object")
    return data


_GOOGLE_FLAGS = (
    ("--operating-account-id", "operating_account_id"),
    ("--list-id", "list_id"),
    ("--login-account-id", "login_account_id"),
    ("--service-account-key", "service_account_key"),
    ("--oauth-file", "oauth_file"),
    ("--terms-accepted", "terms_accepted"),
    ("--validate-only", "validate_only"),
)
_TOKEN_FLAGS = (
    ("--ad-account-id", "ad_account_id"),
    ("--advertiser-id", "advertiser_id"),
    ("--audience-id", "audience_id"),
    ("--audience-name", "audience_name"),
    ("--customer-file-source", "customer_file_source"),
    ("--limited-data-use", "limited_data_use"),
    ("--send-extern-id", "send_extern_id"),
    ("--id-type", "id_type"),
    ("--token-file", "token_file"),
)


def _refuse_flags(args: argparse.Namespace, flags: Sequence[tuple[str, str]], kinds: str) -> None:
    given = [flag for flag, name in flags if getattr(args, name, None)]
    if given:
        raise InvalidInput(f"{', '.join(given)}: only for {kinds} destinations")


def token_secret(path: str | None) -> dict[str, Any] | None:
    """``{"access_token": ...}`` from a file (``-``: standard input), never the command line."""
    if path is None:
        return None
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SegflowError(f"cannot read token file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"token file {path} is not UTF-8 text") from None
    return {"access_token": text.strip()}


def cmd_destinations_add(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    secret: dict[str, Any] | None = None
    config: dict[str, Any] = {}
    if args.ad_user_data:
        config["ad_user_data"] = args.ad_user_data
    if args.ad_personalization:
        config["ad_personalization"] = args.ad_personalization
    prepare = None
    if args.kind == destinations.GOOGLE_ADS:
        if args.path:
            raise InvalidInput("--path is for file destinations")
        _refuse_flags(args, _TOKEN_FLAGS, "meta and tiktok")
        config.update(
            operating_account_id=args.operating_account_id,
            product_destination_id=args.list_id,
            login_account_id=args.login_account_id,
            terms_accepted=args.terms_accepted,
            validate_only=args.validate_only,
        )
        secret = secret_of(args)
    elif args.kind in destinations.TOKEN_KINDS:
        if args.path:
            raise InvalidInput("--path is for file destinations")
        if config:
            raise InvalidInput(
                f"--ad-user-data and --ad-personalization are Google's consent settings; "
                f"{args.kind} requests carry no consent, and members whose records deny "
                "ad_user_data are not sent to it"
            )
        _refuse_flags(args, _GOOGLE_FLAGS, "google_ads")
        config = {
            name: getattr(args, name)
            for _, name in _TOKEN_FLAGS
            if name != "token_file" and getattr(args, name, None)
        }
        secret = token_secret(args.token_file)
        prepare = platforms.platform_for(args.kind).preparer
    else:
        _refuse_flags(args, _GOOGLE_FLAGS, "google_ads")
        _refuse_flags(args, _TOKEN_FLAGS, "meta and tiktok")
        config["path"] = args.path
    create_list = None
    if args.create_list is not None:
        if args.kind != destinations.GOOGLE_ADS or args.list_id:
            raise InvalidInput("--create-list is for google_ads destinations without --list-id")
        create_list = userlists.creator(
            settings, args.create_list, args.list_description or "", args.membership_days
        )
    elif args.list_description is not None or args.membership_days is not None:
        raise InvalidInput("--list-description and --membership-days go with --create-list")
    added = destinations.add_destination(
        db,
        args.name,
        args.kind,
        config,
        utcnow(),
        secret,
        settings.cipher,
        check_credentials=settings.check_credentials,
        token_uri=settings.token_uri,
        create_list=create_list,
        prepare=prepare(settings) if prepare is not None else None,
    )
    if args.json:
        emit_json(added.public())
    else:
        print(f"added {added.kind} destination {added.name!r}: {_describe(added)}")
        if added.kind == destinations.GOOGLE_ADS and not added.terms_accepted:
            print(
                "  nothing will be uploaded until the Customer Match terms are accepted: "
                f"segflow destinations update {added.name!r} --terms-accepted"
            )
        elif added.kind == destinations.META and not added.terms_accepted:
            print(
                f"  ad account act_{added.config['ad_account_id']} has not accepted Meta's "
                "Custom Audience terms: links to it pause until it has"
            )
    return 0


_OAUTH_KEYS = ("client_id", "client_secret", "refresh_token")


NO_CREDENTIALS = "give the new credentials: --service-account-key FILE or --oauth-file FILE"


def secret_of(args: argparse.Namespace) -> dict[str, Any] | None:
    """The credentials named by --service-account-key or --oauth-file, as stored."""
    if args.service_account_key and args.oauth_file:
        raise InvalidInput("give either --service-account-key or --oauth-file, not both")
    if args.service_account_key:
        info = _read_json_file(args.service_account_key, "service-account key")
        return {"type": "service_account", "info": info}
    if args.oauth_file:
        oauth = _read_json_file(args.oauth_file, "OAuth file")
        return {"type": "oauth", **{k: oauth.get(k) for k in _OAUTH_KEYS}}
    return None


def replaced_credentials(updated: dict[str, Any], paused: Sequence[str]) -> None:
    """What ``destinations credentials`` prints, locally and through a server."""
    print(
        f"replaced the credentials of destination {updated['name']!r}: "
        f"{updated['config'].get('credentials', 'stored')}"
    )
    for segment in paused:
        print(
            f"  link {segment!r} -> {updated['name']!r} is paused; once these credentials "
            f"are the right ones: segflow links resume {_arg(segment)} {_arg(updated['name'])}"
        )


def _arg(text: str) -> str:
    return text if re.fullmatch(r"[\w.@+-]+", text) else repr(text)


def new_credentials(args: argparse.Namespace) -> dict[str, Any]:
    """The credentials ``destinations credentials`` was given, locally and through a server."""
    if args.token_file and (args.service_account_key or args.oauth_file):
        raise InvalidInput("--token-file is a meta or tiktok token; give it alone")
    secret = token_secret(args.token_file) if args.token_file else secret_of(args)
    if secret is None:
        raise InvalidInput(NO_CREDENTIALS + " (meta, tiktok: --token-file FILE)")
    return secret


def cmd_destinations_credentials(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    secret = new_credentials(args)
    updated = destinations.replace_credentials(
        db,
        args.name,
        secret,
        utcnow(),
        settings.cipher,
        check_credentials=settings.check_credentials,
        token_uri=settings.token_uri,
    )
    paused = [
        s.link.segment
        for s in links.status(db, now=utcnow(), recent=0)
        if s.link.destination_id == updated.id and s.paused_reason
    ]
    if args.json:
        emit_json(updated.public())
    else:
        replaced_credentials(updated.public(), paused)
    return 0


def cmd_destinations_lists(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    found, items = userlists.destination_lists(db, settings, args.name)
    answer = {
        "destination": found.name,
        "account": found.config["operating_account_id"],
        "current_list_id": found.config.get("product_destination_id"),
        "lists": [i.as_dict() for i in items],
    }
    show_lists(answer, args.json)
    return 0


def show_lists(answer: dict[str, Any], as_json: bool) -> None:
    """A destination's account's lists (as the API's ``/lists`` answer holds them)."""
    items = answer["lists"]
    if as_json:
        emit_json(items)
        return
    account = answer["account"]
    if not items:
        print(f"account {account} has no user lists; create one with destinations add "
              "google_ads NAME ... --create-list \"Display name\"")  # fmt: skip
        return
    current = answer["current_list_id"]
    print(f"user lists of account {account} ({plural(len(items), 'list')}):")
    rows = [("", "id", "name", "members", "match rate", "membership", "status")]
    for i in items:
        rows.append(
            (
                "*" if i["list_id"] == current else "",
                i["list_id"],
                i["display_name"],
                _count(i["size"]),
                f"{i['match_rate_percentage']}%" if i["match_rate_percentage"] is not None else "-",
                f"{i['membership_days']} days" if i["membership_days"] is not None else "-",
                i["membership_status"],
            )
        )
    _table(rows)
    if current:
        print(f"* the list destination {answer['destination']!r} writes to")


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _describe(d: destinations.Destination) -> str:
    c = d.config
    if d.kind == destinations.META:
        return (
            f"ad account act_{c['ad_account_id']}, audience {c['audience_id']}"
            + f", token {c.get('credentials', {}).get('fingerprint', 'stored')}"
            + f", terms {'accepted' if c.get('terms_accepted') else 'NOT accepted'}"
            + (", Limited Data Use" if c.get("limited_data_use") else "")
            + (", dataset key sent as EXTERN_ID" if c.get("send_extern_id") else "")
        )
    if d.kind == destinations.TIKTOK:
        audience = c.get("audience_id") or f"{c['audience_name']!r} (made by the first upload)"
        return (
            f"advertiser {c['advertiser_id']}, audience {audience}, {c['id_type']} ids"
            + f", token {c.get('credentials', {}).get('fingerprint', 'stored')}"
        )
    if d.kind == destinations.FILE:
        base = f"appends JSON lines to {c['path']}"
    else:
        base = (
            f"account {c['operating_account_id']}, list {c['product_destination_id']}"
            + (f", login account {c['login_account_id']}" if c.get("login_account_id") else "")
            + f", credentials: {c.get('credentials', 'application default')}"
            + f", terms {'accepted' if c.get('terms_accepted') else 'NOT accepted'}"
            + (", validate only" if c.get("validate_only") else "")
        )
    return (
        f"{base}; consent ad_user_data={c['ad_user_data']}, "
        f"ad_personalization={c['ad_personalization']}"
    )


def cmd_destinations_list(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    items = destinations.list_destinations(db)
    if args.json:
        emit_json([d.public() for d in items])
        return 0
    if not items:
        print("no destinations yet; add one with: segflow destinations add file NAME --path P")
    for d in items:
        print(f"{d.name} ({d.kind}): {_describe(d)}")
    return 0


def cmd_destinations_update(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    changes: dict[str, Any] = {}
    for name in (
        "terms_accepted",
        "validate_only",
        "ad_user_data",
        "ad_personalization",
        "limited_data_use",
        "send_extern_id",
    ):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if not changes:
        raise InvalidInput("nothing to change; see segflow destinations update --help")
    updated = destinations.update_destination(db, args.name, changes, utcnow())
    print(f"updated destination {updated.name!r}: {_describe(updated)}")
    return 0


def cmd_destinations_delete(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    gone = destinations.delete_destination(db, args.name)
    print(f"deleted destination {gone.name!r}")
    return 0


_LISTED_HELP = {"email": "email addresses", "phone": "phone numbers"}


def cmd_identifiers(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    changes: dict[str, str | Sequence[str] | None] = {
        name: getattr(args, name) for name in MAPPED_COLUMNS if getattr(args, name) is not None
    }
    if args.phone_region is not None:
        changes["default_region"] = args.phone_region
    if changes:
        current = mapping.set_mapping(db, args.name, changes, utcnow())
        chosen = True
    else:
        current, chosen = mapping.show_mapping(db, args.name)
    if args.json:
        emit_json({"dataset": args.name, "set_by_user": chosen, "mapping": current.as_dict()})
        return 0
    origin = "set by a user" if chosen else "detected from the column names"
    print(f"identifier mapping of dataset {args.name!r} ({origin}):")
    for name, value in current.as_dict().items():
        shown = ", ".join(value) if isinstance(value, list) else value
        print(f"  {name:<27} {shown or '-'}")
    return 0


def cmd_link(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    made = links.link(db, args.segment, args.destination, utcnow())
    state = next(s for s in links.status(db) if s.link.id == made.id)
    print(
        f"linked segment {made.segment!r} to {made.destination!r}: "
        f"{plural(state.pending_adds, 'member')} to send (segflow sync, or a running worker)"
    )
    for warning in state.warnings:
        print(f"  warning: {warning}")
    return 0


def cmd_unlink(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    gone, held = links.unlink(db, args.segment, args.destination)
    print(f"unlinked segment {gone.segment!r} from {gone.destination!r}")
    if held:
        print(
            f"  the destination keeps the {plural(held, 'member')} it was sent; segflow no "
            "longer updates it"
        )
    return 0


def print_link_states(items: Sequence[dict[str, Any]]) -> None:
    """Links' states as :meth:`~segflow.activation.links.LinkStatus.as_dict` gives them
    (locally or through a server's API), for people."""
    if not items:
        print("no links yet; link a segment with: segflow link SEGMENT DESTINATION")
    for d in items:
        state = f"PAUSED: {d['paused_reason']}" if d["paused_reason"] else "active"
        print(f"{d['segment']} -> {d['destination']} ({d['kind']}, {state})")
        awaiting = f" ({d['awaiting_google']:,} awaiting Google)" if d["awaiting_google"] else ""
        print(
            f"  {d['synced']:,} synced{awaiting}, {d['pending_adds']:,} pending adds, "
            f"{d['pending_removes']:,} pending removes, {d['failed']:,} failed"
        )
        print(f"  last success: {d['last_success_at'] or 'never'}")
        if d["uploads"]:
            print(f"  last upload: {_upload_line(d['uploads'][0], d['kind'])}")
        if d["match_rate"] is not None:
            print(f"  match rate: {d['match_rate']}")
        if d["list"] is not None:
            print(f"  list at Google: {_list_line(d)}")
        if d["last_error"] and not d["paused_reason"]:
            retry = f" (retry at {d['next_attempt_at']})" if d["next_attempt_at"] else ""
            print(f"  last error: {d['last_error']} at {d['last_error_at']}{retry}")
        for warning in d["warnings"]:
            print(f"  warning: {warning}")


def _when(value: dt.datetime | str | None) -> str:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return str(value.strftime("%Y-%m-%d %H:%M UTC")) if value is not None else "-"


def _google_state(u: dict[str, Any]) -> str:
    if u["google_status"] is None:
        first = dt.datetime.fromisoformat(u["at"]) + uploads.FIRST_CHECK
        return f"not asked yet (from {_when(first)})"
    if u["google_status"] == "PROCESSING" and u["next_check_at"] is not None:
        return f"PROCESSING (asking again {_when(u['next_check_at'])})"
    return str(u["google_status"])


def _errors_text(u: dict[str, Any]) -> str:
    return ", ".join(f"{r} {n:,}" for r, n in sorted(u["errors"].items())) or "-"


def _upload_line(u: dict[str, Any], kind: str = destinations.GOOGLE_ADS) -> str:
    if kind != destinations.GOOGLE_ADS:
        # Only Google is asked later what became of a request; others answer at once.
        line = (
            f"{u['operation']} of {plural(u['members'], 'member')} at {_when(u['at'])}: "
            f"{u['request_id']}"
        )
        for warning in u.get("field_warnings") or ():
            line += f"; {warning}"
        return line
    line = (
        f"{u['operation']} of {plural(u['members'], 'member')} at {_when(u['at'])}: "
        f"{_google_state(u)}"
    )
    if u["match_rate"]:
        line += f", match rate {u['match_rate']}"
    if u["errors"]:
        line += f", errors {_errors_text(u)}"
    if u.get("field_warnings"):
        line += f", {plural(len(u['field_warnings']), 'field warning')}"
    return line


def _list_line(s: dict[str, Any]) -> str:
    info = s["list"] or {}
    if info.get("size") is None:
        text = "size not known"
    else:
        text = f"{info.get('display_name', '')!r} {plural(int(info['size']), 'member')}"
        if info.get("match_rate_percentage") is not None:
            text += f", match rate {info['match_rate_percentage']}%"
    text += f" (read {_when(s['list_read_at'])})"
    if info.get("error"):
        text += f"; last read failed: {info['error']}"
    return text


def cmd_links_show(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    s = links.link_status(db, args.segment, args.destination, now=utcnow(), recent=args.limit)
    show_link(s.as_dict(), args.json)
    return 0


def show_link(s: dict[str, Any], as_json: bool) -> None:
    """What ``links show`` prints of one link's state, locally and through a server."""
    if as_json:
        emit_json(s)
        return
    print_link_states([s])
    info = s["list"]
    if info is not None and info.get("size") is not None:
        print(
            "  list size by network: "
            f"Display {_count(info.get('display_members'))}, "
            f"Search {_count(info.get('search_members'))}, "
            f"YouTube {_count(info.get('youtube_members'))}, "
            f"Gmail {_count(info.get('gmail_members'))}"
        )
    if not s["uploads"]:
        print("  no uploads yet")
        return
    print("  last uploads:")
    if s["kind"] != destinations.GOOGLE_ADS:
        answers = [("when", "operation", "members", "answer", "warnings")]
        for u in s["uploads"]:
            answers.append(
                (
                    _when(u["at"]),
                    u["operation"],
                    f"{u['members']:,}",
                    u["request_id"],
                    "; ".join(u.get("field_warnings") or ()) or "-",
                )
            )
        _table(answers, indent="    ")
        return
    rows = [("when", "operation", "members", "request id", "Google", "errors", "match rate")]
    for u in s["uploads"]:
        rows.append(
            (
                _when(u["at"]),
                u["operation"],
                f"{u['members']:,}",
                u["request_id"],
                _google_state(u),
                _errors_text(u),
                u["match_rate"] or "-",
            )
        )
    _table(rows, indent="    ")
    for u in s["uploads"]:
        if u["check_error"] and u["google_status"] != "SUCCESS":
            print(f"  note: request {u['request_id']}: {u['check_error']}")
    for u in s["uploads"]:
        for warning in u.get("field_warnings") or ():
            print(f"  Google warned about request {u['request_id']}: {warning}")


def cmd_links(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    show_links([s.as_dict() for s in links.status(db, now=utcnow())], args.json)
    return 0


def show_links(items: Sequence[dict[str, Any]], as_json: bool) -> None:
    """What ``links`` prints, locally and through a server."""
    if as_json:
        emit_json(list(items))
    else:
        print_link_states(items)


def cmd_links_failed(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    found = _find_link(db, args.segment, args.destination)
    rows = links.failed_members(db, found.id, limit=args.limit)
    show_failed([{"key": k, "reason": r} for k, r in rows], args.json)
    return 0


def show_failed(rows: Sequence[dict[str, str]], as_json: bool) -> None:
    """What ``links failed`` prints, locally and through a server."""
    if as_json:
        emit_json(list(rows))
        return
    if not rows:
        print("no refused members")
    for row in rows:
        print(f"{row['key']}: {row['reason']}")


def cmd_links_resume(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    resumed = links.resume(db, args.segment, args.destination, retry_failed=args.retry_failed)
    show_resumed(resumed.segment, resumed.destination, args.retry_failed)
    return 0


def show_resumed(segment: str, destination: str, retry_failed: bool) -> None:
    """What ``links resume`` prints, locally and through a server."""
    again = " and its refused members will be tried again" if retry_failed else ""
    print(f"link {segment!r} -> {destination!r} is active{again}")


def _find_link(db: Database, segment: str, destination: str) -> links.Link:
    for item in links.list_links(db):
        if item.segment == segment and item.destination == destination:
            return item
    raise SegflowError(f"segment {segment!r} is not linked to {destination!r}")


def cmd_sync(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    if args.status:
        return cmd_links(args, db, settings)
    report = sync.sync(db, settings, clock=utcnow)
    uploads.poll(db, settings, clock=utcnow)
    if args.json:
        emit_json({"links": [o.as_dict() for o in report.outcomes], "ok": report.ok})
    else:
        print_sync_report(report)
    return 0 if report.ok else 1


def print_sync_report(report: sync.SyncReport, out: Any = None, *, quiet: bool = False) -> None:
    out = out or sys.stdout
    if not report.outcomes and not quiet:
        print("nothing to sync (no links due)", file=out)
    for o in report.outcomes:
        line = (
            f"{o.link.segment} -> {o.link.destination}: +{o.added:,} added, "
            f"-{o.removed:,} removed, {o.rejected:,} refused, {plural(o.requests, 'request')}"
        )
        if o.paused:
            line += f"; PAUSED: {o.paused}"
        elif o.error:
            retry = f", retrying at {o.retry_at.isoformat()}" if o.retry_at else ""
            line += f"; {o.error}{retry}"
        elif o.deferred:
            line += f"; waiting: {o.deferred}"
        print(line, file=out, flush=True)


def cmd_secrets_rotate(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    count, key_file, new_key = destinations.rotate_key(db, settings.cipher)
    print(f"re-encrypted {plural(count, 'stored credential')} under a new key")
    if key_file is not None:
        print(f"  the new key is in {key_file} (mode 0600); the old one is kept beside it as "
              f"{key_file.name}.previous until you delete it")  # fmt: skip
    else:
        print("  keys come from SEGFLOW_SECRET_KEY: set it to the new key below, first, before "
              "every process restarts (old keys after a comma still decrypt):")  # fmt: skip
        print(f"  {new_key}")
    return 0


def cmd_records_forget(args: argparse.Namespace, db: Database, settings: Settings) -> int:
    report = forget.forget(db, args.dataset, args.key, utcnow())
    show.forgotten(report.as_dict(), args.key, args.json)
    return 0


def register(sub: Any, common: argparse.ArgumentParser, as_json: argparse.ArgumentParser) -> None:
    dst = sub.add_parser("destinations", help="add, list, update or delete destinations")
    dst_sub = dst.add_subparsers(dest="action", required=True, metavar="ACTION")
    da = dst_sub.add_parser(
        "add",
        parents=[common, as_json],
        help="add a google_ads, meta, tiktok or file destination",
        description="Add a destination. google_ads: a Customer Match user list written "
        "through Google's Data Manager API. meta: a customer-list Custom Audience of a Meta ad "
        "account, written through the Graph API (--ad-account-id, --audience-id or "
        "--audience-name with --customer-file-source, --token-file with a system user's "
        "access token; the account, its Custom Audience terms and the audience are checked "
        "with Meta before anything is stored). tiktok: a customer-file audience of a TikTok "
        "advertiser (--advertiser-id, --audience-id or --audience-name, --id-type email or "
        "phone, --token-file). "
        "file: each batch that would be sent, as JSON lines. "
        "A google_ads destination needs its consent chosen, --ad-user-data and "
        "--ad-personalization, each granted or denied as the people in the list agreed: "
        "Google requires consent for users in the European Economic Area, and there is no "
        "default. Members whose records carry their own consent (the identifier mapping's "
        "consent_ad_user_data and consent_ad_personalization columns) are sent with theirs; "
        "an empty cell takes the destination's, a value segflow does not recognise is sent "
        "as denied. A file destination records what would be sent, so its consent may be "
        f"left out ({destinations.FILE_DEFAULT_CONSENT}).",
    )
    da.add_argument("kind", choices=destinations.KINDS)
    da.add_argument("name", metavar="NAME")
    da.add_argument("--path", metavar="FILE", help="file: where to append batches")
    da.add_argument("--operating-account-id", metavar="ID", help="google_ads: customer id")
    da.add_argument("--login-account-id", metavar="ID", help="google_ads: manager account id")
    da.add_argument("--list-id", metavar="ID", help="google_ads: Customer Match user list id")
    da.add_argument(
        "--service-account-key", metavar="FILE", help="google_ads: service-account JSON key"
    )
    da.add_argument(
        "--oauth-file",
        metavar="FILE",
        help="google_ads: JSON file with client_id, client_secret and refresh_token",
    )
    da.add_argument("--ad-account-id", metavar="ID", help="meta: ad account, act_1234...")
    da.add_argument("--advertiser-id", metavar="ID", help="tiktok: the advertiser's id")
    da.add_argument(
        "--audience-id", metavar="ID", help="meta, tiktok: an existing customer-list audience"
    )
    da.add_argument(
        "--audience-name",
        metavar="NAME",
        help="meta: create a customer-list audience so named; tiktok: the audience so named, "
        "created with the link's first upload (TikTok makes none empty)",
    )
    da.add_argument(
        "--id-type",
        choices=("email", "phone"),
        help="tiktok: the one kind of identifier the audience holds (default email)",
    )
    da.add_argument(
        "--customer-file-source",
        choices=meta_config.CUSTOMER_FILE_SOURCES,
        help="meta: where the people came from (Meta requires it for a new audience)",
    )
    da.add_argument(
        "--limited-data-use",
        action="store_true",
        help="meta: send with Limited Data Use (data_processing_options LDU, geolocated by Meta)",
    )
    da.add_argument(
        "--send-extern-id",
        action="store_true",
        help="meta: also send each record's dataset key, hashed, as EXTERN_ID",
    )
    da.add_argument(
        "--token-file",
        metavar="FILE",
        help="meta, tiktok: file holding the access token (- reads standard input); never on "
        "the command line, where other users of the machine could read it",
    )
    da.add_argument(
        "--terms-accepted",
        action="store_true",
        help="google_ads: the Customer Match terms of service are accepted (needed to upload)",
    )
    da.add_argument(
        "--validate-only", action="store_true", help="google_ads: Google checks, applies nothing"
    )
    for flag, name in (
        ("--ad-user-data", "ad_user_data"),
        ("--ad-personalization", "ad_personalization"),
    ):
        da.add_argument(
            flag,
            choices=(destinations.GRANTED, destinations.DENIED),
            help=f"consent: {destinations.CONSENT_MEANING[name]}; required for google_ads, "
            f"sent for members without their own consent column; file: default "
            f"{destinations.FILE_DEFAULT_CONSENT}",
        )
    da.add_argument(
        "--create-list",
        metavar="DISPLAY_NAME",
        help="google_ads: create a new Customer Match list with this name (instead of --list-id)",
    )
    da.add_argument("--list-description", metavar="TEXT", help="with --create-list")
    da.add_argument(
        "--membership-days",
        type=int,
        metavar="N",
        help=f"with --create-list: how long members stay (1-{userlists.MAX_MEMBERSHIP_DAYS}, "
        f"default {userlists.MAX_MEMBERSHIP_DAYS})",
    )
    da.set_defaults(func=cmd_destinations_add)
    dl = dst_sub.add_parser("list", parents=[common, as_json], help="list destinations")
    dl.set_defaults(func=cmd_destinations_list)
    dls = dst_sub.add_parser(
        "lists",
        parents=[common, as_json],
        help="the Customer Match lists of a google_ads destination's account, read from Google",
    )
    dls.add_argument("name", metavar="NAME")
    dls.set_defaults(func=cmd_destinations_lists)
    dc = dst_sub.add_parser(
        "credentials",
        parents=[common, as_json],
        help="replace a destination's credentials (checked as when adding)",
        description="Store new credentials for a google_ads destination, for instance after "
        "Google revoked the old refresh token. They are checked by refreshing them once, as "
        "when adding a destination; credentials Google refuses leave the old ones in place. "
        "The credentials are never printed, only what kind they are.",
    )
    dc.add_argument("name", metavar="NAME")
    dc.add_argument(
        "--token-file",
        metavar="FILE",
        help="meta, tiktok: file holding the new access token (- : stdin)",
    )
    dc.add_argument("--service-account-key", metavar="FILE", help="a service-account JSON key")
    dc.add_argument(
        "--oauth-file",
        metavar="FILE",
        help="JSON file with client_id, client_secret and refresh_token",
    )
    dc.set_defaults(func=cmd_destinations_credentials)
    du = dst_sub.add_parser("update", parents=[common], help="change a destination's settings")
    du.add_argument("name", metavar="NAME")
    du.add_argument("--terms-accepted", action=argparse.BooleanOptionalAction, default=None)
    du.add_argument(
        "--validate-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="turning it off sends every member again for real",
    )
    du.add_argument(
        "--limited-data-use",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="meta: Limited Data Use on or off (every member is sent again with it)",
    )
    du.add_argument(
        "--send-extern-id",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="meta: send the dataset key as EXTERN_ID, or not (every member is sent again)",
    )
    for flag, name in (
        ("--ad-user-data", "ad_user_data"),
        ("--ad-personalization", "ad_personalization"),
    ):
        du.add_argument(
            flag,
            choices=(destinations.GRANTED, destinations.DENIED),
            help=f"consent: {destinations.CONSENT_MEANING[name]}",
        )
    du.set_defaults(func=cmd_destinations_update)
    dd = dst_sub.add_parser("delete", parents=[common], help="delete an unlinked destination")
    dd.add_argument("name", metavar="NAME")
    dd.set_defaults(func=cmd_destinations_delete)

    idf = sub.add_parser(
        "identifiers",
        parents=[common, as_json],
        help="show or set which columns of a dataset hold email, phone, names...",
        description="Show the identifier mapping of a dataset, or change entries of it. "
        "Until changed, it is detected from the column names. An empty value clears an entry.",
    )
    idf.add_argument("name", metavar="DATASET")
    for name in MAPPED_COLUMNS:
        if name in LISTED_COLUMNS:
            idf.add_argument(
                "--" + name,
                dest=name,
                metavar="COLUMN[,COLUMN...]",
                help=f"the columns holding {_LISTED_HELP[name]}, in the order sent "
                "(comma-separated; at most 10 identifiers a member are sent in all)",
            )
            continue
        idf.add_argument("--" + name.replace("_", "-"), dest=name, metavar="COLUMN")
    idf.add_argument(
        "--phone-region",
        metavar="CC",
        help="region for phone numbers without a country code (default US)",
    )
    idf.set_defaults(func=cmd_identifiers)

    lk = sub.add_parser("link", parents=[common], help="sync a segment's members to a destination")
    lk.add_argument("segment", metavar="SEGMENT")
    lk.add_argument("destination", metavar="DESTINATION")
    lk.set_defaults(func=cmd_link)
    ul = sub.add_parser("unlink", parents=[common], help="stop syncing a segment to a destination")
    ul.add_argument("segment", metavar="SEGMENT")
    ul.add_argument("destination", metavar="DESTINATION")
    ul.set_defaults(func=cmd_unlink)

    ls = sub.add_parser(
        "links",
        parents=[common, as_json],
        help="sync status of every link (or: show, failed, resume)",
    )
    ls.set_defaults(func=cmd_links)
    ls_sub = ls.add_subparsers(dest="action", required=False, metavar="ACTION")
    lf = ls_sub.add_parser(
        "failed", parents=[common, as_json], help="members a destination refused, and why"
    )
    lf.add_argument("segment", metavar="SEGMENT")
    lf.add_argument("destination", metavar="DESTINATION")
    lf.add_argument("--limit", type=int, default=100, metavar="N")
    lf.set_defaults(func=cmd_links_failed)
    lsh = ls_sub.add_parser(
        "show",
        parents=[common, as_json],
        help="one link: its last uploads and what Google said about them, the list's size",
    )
    lsh.add_argument("segment", metavar="SEGMENT")
    lsh.add_argument("destination", metavar="DESTINATION")
    lsh.add_argument("--limit", type=int, default=20, metavar="N", help="uploads shown (20)")
    lsh.set_defaults(func=cmd_links_show)
    lr = ls_sub.add_parser("resume", parents=[common], help="unpause a link and retry it now")
    lr.add_argument("segment", metavar="SEGMENT")
    lr.add_argument("destination", metavar="DESTINATION")
    lr.add_argument("--retry-failed", action="store_true", help="also send refused members again")
    lr.set_defaults(func=cmd_links_resume)

    sec = sub.add_parser("secrets", help="manage the key that encrypts stored credentials")
    sec_sub = sec.add_subparsers(dest="action", required=True, metavar="ACTION")
    rot = sec_sub.add_parser(
        "rotate",
        parents=[common],
        help="re-encrypt every stored credential under a new key",
        description="Generate a new key and re-encrypt every destination's credentials with "
        "it in one transaction. With a key file the new key replaces it and the old one is "
        "kept as FILE.previous; with SEGFLOW_SECRET_KEY the new key is printed once.",
    )
    rot.set_defaults(func=cmd_secrets_rotate)

    rec = sub.add_parser("records", help="act on single records")
    rec_sub = rec.add_subparsers(dest="action", required=True, metavar="ACTION")
    fg = rec_sub.add_parser(
        "forget",
        parents=[common, as_json],
        help="erase a person's record everywhere and remove them from destinations",
        description="Erase one record: its values and key, its key in the enter/exit "
        "history and in import details; it leaves every segment and a remove is queued for "
        "every destination that may hold it.",
    )
    fg.add_argument("dataset", metavar="DATASET")
    fg.add_argument("key", metavar="KEY")
    fg.set_defaults(func=cmd_records_forget)

    sy = sub.add_parser(
        "sync", parents=[common, as_json], help="send pending adds and removes once, then exit"
    )
    sy.add_argument("--status", action="store_true", help="only show each link's status")
    sy.set_defaults(func=cmd_sync)
