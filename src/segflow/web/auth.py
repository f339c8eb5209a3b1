"""Who is asking: the sign-in routes and the middleware that guards every other.

In the local mode (``SEGFLOW_AUTH`` off) every request acts for the one
implicit user in the default workspace. In team mode the middleware admits a
request only with a live session cookie or ``Authorization: Bearer`` token,
and a session-authenticated request that changes anything only with the
session's CSRF token in ``X-CSRF-Token``. It runs before routing, so a route
added later is guarded without doing anything. Routes then see the database
only through ``workspace_db``: the workspace comes from the principal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from segflow import auth
from segflow.db.engine import Database, utcnow
from segflow.errors import Forbidden, InvalidInput, NotAuthenticated
from segflow.web.errors import error_response
from segflow.web.state import AppState

SESSION_COOKIE = "segflow_session"
CSRF_COOKIE = "segflow_csrf"
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Reachable without signing in: health, the sign-in page and route, the
#: machine-readable API description, the pages' assets and the icon. Nothing here reads
#: a workspace's data, so no one is identified for them.
_PUBLIC = frozenset({"/healthz", "/login", "/api/auth/login", "/openapi.json", "/favicon.ico"})


def _public(path: str) -> bool:
    return path in _PUBLIC or path.startswith("/static/")


def principal_of(request: Request) -> auth.Principal:
    principal: auth.Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # only public routes run without one, and they never ask
        raise NotAuthenticated("sign in first")
    return principal


def workspace_db(request: Request) -> Database:
    """The database as the request's workspace sees it: the routes' only way in."""
    state: AppState = request.app.state.segflow
    return state.db.in_workspace(principal_of(request).workspace_id)


class Authenticate:
    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bag = scope.setdefault("state", {})
        if not self.state.settings.auth:
            bag["principal"] = auth.LOCAL
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if _public(path):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        principal = await run_in_threadpool(identify, self.state, headers)
        if principal is None:
            if path.startswith("/api/"):
                response: Response = error_response(
                    401, "unauthenticated", "sign in or send a bearer token"
                )
                response.headers["WWW-Authenticate"] = 'Bearer realm="segflow"'
            else:
                response = RedirectResponse("/login", status_code=303)
            await response(scope, receive, send)
            return
        method = scope["method"]
        if principal.via == "session" and method not in _SAFE_METHODS:
            if not auth.csrf_matches(principal, headers.get(CSRF_HEADER)):
                await error_response(
                    403, "forbidden", "missing or wrong X-CSRF-Token header for this session"
                )(scope, receive, send)
                return
        bag["principal"] = principal
        await self.app(scope, receive, send)


def identify(state: AppState, headers: Mapping[str, str]) -> auth.Principal | None:
    """Who the credentials in these (lower-cased) request headers belong to, now."""
    db, now = state.db, utcnow()
    bearer = headers.get("authorization", "")
    if bearer[:7].lower() == "bearer ":
        return auth.token_principal(db, bearer[7:].strip(), now)
    secret = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
    return auth.session_principal(db, secret, now) if secret else None


async def still_signed_in(request: Request) -> bool:
    """Whether a long request's credentials still give it the same workspace.

    A stream outlives the check at its start; without this, a revoked token,
    a removed user or an ended session would keep receiving events.
    """
    state: AppState = request.app.state.segflow
    if not state.settings.auth:
        return True
    again = await run_in_threadpool(identify, state, request.headers)
    return again is not None and again.workspace_id == principal_of(request).workspace_id


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


# ---------------------------------------------------------------- routes

router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=auth.MAX_PASSWORD)
    workspace: str | None = Field(default=None, max_length=64)


class WorkspaceIn(BaseModel):
    workspace: str = Field(min_length=1, max_length=64)


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.segflow
    return state


def _me(request: Request, principal: auth.Principal) -> dict[str, Any]:
    state = _state(request)
    workspaces = (
        auth.user_workspaces(state.db, principal.user_id)
        if principal.user_id is not None
        else [principal.workspace]
    )
    return {
        "auth": state.settings.auth,
        "user": principal.user,
        "workspace": principal.workspace,
        "workspaces": workspaces,
        "via": principal.via,
    }


def _require_team_mode(request: Request) -> None:
    if not _state(request).settings.auth:
        raise InvalidInput("team mode is off: segflow serves one local user (SEGFLOW_AUTH=on)")


@router.post("/login")
def login(request: Request, response: Response, body: LoginIn) -> dict[str, Any]:
    """Sign in with a name and password; sets the session and CSRF cookies."""
    _require_team_mode(request)
    state = _state(request)
    principal, secret = auth.login(
        state.db,
        body.name,
        body.password,
        utcnow(),
        hours=state.settings.session_hours,
        workspace=body.workspace,
        client=request.client.host if request.client else None,
    )
    max_age = state.settings.session_hours * 3600
    secure = state.settings.cookie_secure
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=max_age, httponly=True, secure=secure, samesite="strict"
    )
    # Readable by the pages' script, which echoes it in X-CSRF-Token: a page
    # of another site can neither read it nor make the browser add the header.
    response.set_cookie(
        CSRF_COOKIE,
        principal.csrf_token or "",
        max_age=max_age,
        httponly=False,
        secure=secure,
        samesite="strict",
    )
    return {**_me(request, principal), "csrf_token": principal.csrf_token}


class PasswordIn(BaseModel):
    current_password: str = Field(max_length=auth.MAX_PASSWORD)
    new_password: str = Field(max_length=auth.MAX_PASSWORD)


@router.post("/password", status_code=204)
def change_password(request: Request, body: PasswordIn) -> Response:
    """Change your own password; your other sessions end, this one stays.

    Only a signed-in person can: an API token cannot change its user's
    password. A wrong current password counts as a failed sign-in.
    """
    _require_team_mode(request)
    principal = principal_of(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if principal.via != "session" or not secret or principal.user is None:
        raise Forbidden("only a signed-in person can change their password, not an API token")
    auth.change_password(
        _state(request).db,
        principal.user,
        body.current_password,
        body.new_password,
        secret,
        utcnow(),
    )
    return Response(status_code=204)


@router.post("/logout", status_code=204)
def logout(request: Request) -> Response:
    """End this session (a no-op for tokens and the local mode)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and principal_of(request).via == "session":
        auth.logout(_state(request).db, secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.get("/me")
def me(request: Request) -> dict[str, Any]:
    """Who is signed in, the current workspace and the others they may switch to."""
    return _me(request, principal_of(request))


@router.post("/workspace")
def choose_workspace(request: Request, body: Annotated[WorkspaceIn, Body()]) -> dict[str, Any]:
    """Switch this session to another of the user's workspaces."""
    _require_team_mode(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if principal_of(request).via != "session" or not secret:
        raise InvalidInput("an API token belongs to one workspace; create one for the other")
    principal = auth.switch_workspace(_state(request).db, secret, body.workspace, utcnow())
    return _me(request, principal)
