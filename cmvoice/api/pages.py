"""Pages for a browser: the campaign page, and the login form that puts the key in a cookie."""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cmvoice.api.auth import API_KEY_COOKIE, BEARER_CHALLENGE, key_check, offered_page_key
from cmvoice.api.problems import read_body
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError
from cmvoice.reporting.from_redis import campaign_page_view
from cmvoice.reporting.page import render_campaign_page
from cmvoice.runtime import Runtime

#: Path of the login form.
LOGIN_PATH = "/login"
#: How long the login cookie lasts: a working day, then the form asks again.
LOGIN_COOKIE_MAX_AGE_S = 12 * 3600
#: Largest login form body (a key and the page to go back to).
MAX_LOGIN_BODY_BYTES = 4 * 1024
#: Headers of every page: never cached (it shows live counts), never framed, no referrer.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
#: A page of this API to go back to after the login: a local path, never another site.
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")

_LOGIN_FORM = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · cmvoice</title>
<link rel="icon" href="data:,">
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; background: #f4f5f7; color: #1a202c;
       display: flex; justify-content: center; padding-top: 12vh; margin: 0; }}
form {{ background: #fff; padding: 2rem; border-radius: 8px; width: 22rem;
       box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }}
h1 {{ font-size: 1.25rem; margin: 0 0 1rem; }}
label {{ display: block; margin-bottom: .25rem; }}
input[type=password] {{ width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; }}
button {{ margin-top: 1rem; padding: .5rem 1.25rem; font: inherit; cursor: pointer; }}
.error {{ color: #c53030; }}
</style>
</head>
<body>
<form method="post" action="{action}">
<h1>cmvoice</h1>
{message}
<label for="key">API key</label>
<input type="password" id="key" name="key" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit" id="sign-in">Sign in</button>
</form>
</body>
</html>
"""


def login_form(next_path: str, *, message: str = "", status: int = 200) -> HTMLResponse:
    """The login form; after it, the browser goes to ``next_path``."""
    shown = f'<p class="error" id="login-error">{escape(message)}</p>' if message else ""
    html = _LOGIN_FORM.format(action=LOGIN_PATH, message=shown, next=escape(next_path))
    headers = {**PAGE_HEADERS, **(BEARER_CHALLENGE if status == 401 else {})}
    return HTMLResponse(html, status_code=status, headers=headers)


def safe_next(value: str) -> str:
    """``value`` when it is a path of this API, else the empty string (no open redirect)."""
    return value if _LOCAL_PATH.fullmatch(value) else ""


def pages_router(runtime_factory: Callable[[], Runtime]) -> APIRouter:
    router = APIRouter(tags=["pages"])

    @router.get(LOGIN_PATH, include_in_schema=False)
    def login_page(next_path: Annotated[str, Query(alias="next")] = "") -> HTMLResponse:
        return login_form(safe_next(next_path))

    @router.post(LOGIN_PATH, include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await read_body(request, MAX_LOGIN_BODY_BYTES)).decode("latin-1"))
        key = form.get("key", [""])[0]
        next_path = safe_next(form.get("next", [""])[0])
        if key_check(request).refusal(key) is not None:
            return login_form(
                next_path, message="That is not an API key of this server.", status=401
            )
        response: Response
        if next_path:
            response = RedirectResponse(next_path, status_code=303, headers=PAGE_HEADERS)
        else:
            response = HTMLResponse(
                "<!DOCTYPE html><title>Signed in · cmvoice</title><p>Signed in. Open a campaign "
                "at /campaigns/&lt;campaign id&gt;.</p>",
                headers=PAGE_HEADERS,
            )
        response.set_cookie(
            API_KEY_COOKIE,
            key,
            max_age=LOGIN_COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="strict",
            # Marked Secure whenever the browser came over TLS (as it should, past localhost).
            secure=request.url.scheme == "https",
        )
        return response

    @router.get(
        "/campaigns/{campaign_id}",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}}, 401: {}, 404: {}},
        summary="The campaign page (for a browser)",
    )
    async def campaign_page(campaign_id: str, request: Request) -> HTMLResponse:
        """Progress, calls placed and outcomes per minute, result codes, states and the rules
        bad rows broke. The key comes as a bearer token or in the cookie of ``/login``;
        without one, the login form is the answer (401)."""
        if key_check(request).refusal(offered_page_key(request)) is not None:
            return login_form(request.url.path, status=401)
        store = CampaignStore(runtime_factory())
        try:
            view = await run_in_threadpool(campaign_page_view, store, campaign_id)
        except CampaignError:
            body = f"<!DOCTYPE html><title>cmvoice</title><p>No campaign {escape(campaign_id)}.</p>"
            return HTMLResponse(body, status_code=404, headers=PAGE_HEADERS)
        return HTMLResponse(render_campaign_page(view), headers=PAGE_HEADERS)

    return router
