"""Graph API error answers: the JSON body ``{"error": {...}}`` and HTTP status Meta sends.

Each function builds one :class:`GraphError` whose body the SDK's
``FacebookRequestError`` parses into ``api_error_code()``,
``api_error_subcode()``, ``api_error_message()``, ``api_error_type()`` and
``api_transient_error()``. Where a message is Meta's, the comment says where
it was seen; the others are the fake's wording in Meta's style.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field

from segflow.activation.meta.config import GRAPH_API_VERSION

# The version segflow pins is the one the fake serves: one place to change it.
API_VERSION = GRAPH_API_VERSION
RATE_LIMIT_DOC = "https://developers.facebook.com/docs/graph-api/overview/rate-limiting"


def trace_id() -> str:
    return secrets.token_urlsafe(16)[:23]


@dataclass
class GraphError(Exception):
    status: int
    message: str
    type: str
    code: int
    subcode: int | None = None
    transient: bool = False
    user_title: str | None = None
    user_msg: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        error: dict[str, object] = {
            "message": self.message,
            "type": self.type,
            "code": self.code,
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.transient
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = trace_id()
        return json.dumps({"error": error}).encode()


def unsupported(method: str, object_id: str) -> GraphError:
    """An unknown object, or one the token may not see (code 100, subcode 33).

    Message, type and HTTP 400 as seen in SDK issues (roughike/flutter_facebook_login#44,
    facebookarchive/php-graph-sdk#999); Meta's error reference lists 100/33.
    """
    return GraphError(
        400,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this operation. "
        "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api",
        "GraphMethodException",
        100,
        33,
    )


def deprecated_version(asked: str) -> GraphError:
    """Any version but the fake's: Meta's answer to a deprecated Ads API version.

    Code 2635 and message as in facebook/facebook-java-business-sdk#136 (type OAuthException).
    """
    return GraphError(
        400,
        "(#2635) You are calling a deprecated version of the Ads API. "
        f"Please update to the latest version: {API_VERSION}.",
        "OAuthException",
        2635,
    )


def token_missing() -> GraphError:
    return GraphError(
        400, "An access token is required to request this resource.", "OAuthException", 104
    )


def token_invalid() -> GraphError:
    return GraphError(
        400, "Invalid OAuth access token - Cannot parse access token", "OAuthException", 190
    )


def token_expired(now: float) -> GraphError:
    """Code 190 subcode 463, message as in snarfed/bridgy#59."""
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    before = at - dt.timedelta(hours=1)
    fmt = "%A, %d-%b-%y %H:%M:%S UTC"
    return GraphError(
        400,
        f"Error validating access token: Session has expired on {before.strftime(fmt)}. "
        f"The current time is {at.strftime(fmt)}.",
        "OAuthException",
        190,
        463,
    )


def token_revoked() -> GraphError:
    """Code 190 subcode 460 (roughike/flutter_facebook_login#151)."""
    return GraphError(
        400,
        "Error validating access token: The session has been invalidated because the user "
        "changed their password or Facebook has changed the session for security reasons.",
        "OAuthException",
        190,
        460,
    )


def permission_denied() -> GraphError:
    """A write without ``ads_management``: code 200 (facebook-java-business-sdk#223's message)."""
    return GraphError(
        403,
        "(#200) Requires ads_management permission to manage the object",
        "OAuthException",
        200,
    )


def tos_not_accepted(account_id: str) -> GraphError:
    """Custom Audience terms not accepted: code 2663 (facebook-nodejs-business-sdk#26)."""
    return GraphError(
        400,
        "(#2663) Terms of service has not been accepted. To accept, go to "
        f"https://www.facebook.com/customaudiences/app/tos/?act={account_id}",
        "OAuthException",
        2663,
    )


def missing_parameter(name: str) -> GraphError:
    return GraphError(400, f"(#100) The parameter {name} is required", "OAuthException", 100)


def invalid_parameter(user_title: str, user_msg: str, subcode: int | None = None) -> GraphError:
    return GraphError(
        400,
        "Invalid parameter",
        "OAuthException",
        100,
        subcode,
        user_title=user_title,
        user_msg=user_msg,
    )


def nonexisting_field(field_name: str, node_type: str) -> GraphError:
    return GraphError(
        400,
        f"(#100) Tried accessing nonexisting field ({field_name}) on node type ({node_type})",
        "OAuthException",
        100,
    )


def account_rate_limited(usage_header: str) -> GraphError:
    """The custom-audience business use case over budget: code 80003.

    Message pattern of the 8000x ad-account throttles (singer-io/tap-facebook#192,
    airbytehq/airbyte#10655: subcode 2446079); 80003 is the custom-audience
    use case's code in Meta's rate-limiting guide.
    """
    return GraphError(
        400,
        "(#80003) There have been too many calls to this ad-account. Wait a bit and try again. "
        f"For more info, please refer to {RATE_LIMIT_DOC}.",
        "OAuthException",
        80003,
        2446079,
        transient=True,
        headers={"X-Business-Use-Case-Usage": usage_header},
    )


def app_limit() -> GraphError:
    """Code 4 (Meta's error reference: "Application request limit reached")."""
    return GraphError(
        400, "(#4) Application request limit reached", "OAuthException", 4, transient=True
    )


def user_limit() -> GraphError:
    """Code 17 (Meta's error reference); subcode 2446079 as clients' recorded answers carry it."""
    return GraphError(
        400, "(#17) User request limit reached", "OAuthException", 17, 2446079, transient=True
    )


def calls_exceeded() -> GraphError:
    """Code 613 (facebook-php-business-sdk#344, during a custom audience upload)."""
    return GraphError(
        400,
        "(#613) Calls to this api have exceeded the rate limit.",
        "OAuthException",
        613,
        transient=True,
    )


def temporary() -> GraphError:
    """Code 2, the "temporary" error the SDK's own error codes name; HTTP 500."""
    return GraphError(
        500,
        "An unexpected error has occurred. Please retry your request later.",
        "OAuthException",
        2,
        transient=True,
    )


#: An HTML page as Meta's front end sends with a 503 (facebook-python-business-sdk#141
#: shows such a page). It has no "error" word: the SDK tests the body with ``in``.
UNAVAILABLE_HTML = (
    b'<!DOCTYPE html>\n<html lang="en" id="facebook"><head><title>Facebook | '
    b'Service Unavailable</title><meta charset="utf-8"></head><body><h1>Sorry, '
    b"something went wrong.</h1><p>Service Unavailable. We're working on it and we'll "
    b"get it fixed as soon as we can.</p></body></html>\n"
)
