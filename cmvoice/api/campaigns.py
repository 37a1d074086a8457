"""``/v1/campaigns``: upload a file of calls; follow, pause, resume or cancel it; its report."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from cmvoice.api.auth import require_api_key
from cmvoice.api.campaign_options import (
    FIELD_DESCRIPTIONS,
    MAX_NAME_CHARS,
    CampaignOptions,
    campaign_options,
)
from cmvoice.api.campaign_starts import CampaignStarts
from cmvoice.api.problems import ApiProblem, error_responses, problem
from cmvoice.api.uploads import errors_path_for, read_campaign_form, save_upload
from cmvoice.campaigns import control
from cmvoice.campaigns.model import Campaign
from cmvoice.campaigns.report import report_csv_chunks
from cmvoice.campaigns.store import CampaignStore
from cmvoice.errors import CampaignError, InvalidInstruction
from cmvoice.runtime import Runtime

#: Where a browser sees a campaign (served by ``cmvoice.api.pages``).
PAGE_PATH = "/campaigns/{campaign_id}"


class CampaignCreated(BaseModel):
    """The answer to an upload: the campaign exists; its rows are enqueued in the background."""

    campaign_id: str
    name: str
    kind: str
    status_url: str
    report_url: str
    page_url: str


#: The multipart form of ``POST /v1/campaigns``, for the OpenAPI document.
UPLOAD_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file", "kind"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV or JSON lines"},
        **{
            name: {"type": "string", "description": description}
            for name, description in FIELD_DESCRIPTIONS.items()
        },
    },
}


def campaigns_router(runtime_factory: Callable[[], Runtime], starts: CampaignStarts) -> APIRouter:
    router = APIRouter(
        prefix="/v1/campaigns", tags=["campaigns"], dependencies=[Depends(require_api_key)]
    )

    def store() -> CampaignStore:
        return CampaignStore(runtime_factory())

    def known(campaign_id: str) -> CampaignStore:
        """The store, once the campaign is known to be in it (else 404)."""
        campaigns = store()
        if campaigns.find(campaign_id) is None:
            raise problem(404, "campaign_id", "no such campaign (unknown, or expired)", campaign_id)
        return campaigns

    def act(
        action: Callable[[CampaignStore, str], Any], campaign_id: str
    ) -> tuple[Any, dict[str, Any]]:
        """A control's result on a known campaign, and the campaign's status after it."""
        campaigns = known(campaign_id)
        try:
            result = action(campaigns, campaign_id)
        except CampaignError as exc:
            status = str(campaigns.status_of(campaign_id) or "")
            raise problem(409, "status", str(exc), status) from None
        return result, campaigns.progress(campaign_id).to_dict()

    @router.post(
        "",
        status_code=202,
        response_model=CampaignCreated,
        responses=error_responses(401, 413, 415, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"multipart/form-data": {"schema": UPLOAD_FORM_SCHEMA}},
            }
        },
        summary="Start a campaign from a file",
    )
    async def create_campaign(request: Request) -> JSONResponse:
        """Check the form and the file's header, create the campaign and answer at once; its
        rows are validated and enqueued in the background. Bad rows do not stop the rest:
        they are in the report (state INVALID or DUPLICATE) with the rule they broke."""
        fields, upload = await read_campaign_form(request)
        try:
            options, errors = campaign_options(fields)
            if options is None:
                raise ApiProblem(422, errors)
            campaign_store = store()
            campaign = await run_in_threadpool(_create, campaign_store, upload, options)
        finally:
            await upload.close()
        starts.start(campaign_store, campaign)
        cid = campaign.campaign_id
        created = CampaignCreated(
            campaign_id=cid,
            name=campaign.name,
            kind=campaign.kind,
            status_url=f"/v1/campaigns/{cid}",
            report_url=f"/v1/campaigns/{cid}/report",
            page_url=PAGE_PATH.format(campaign_id=cid),
        )
        return JSONResponse(created.model_dump(), status_code=202)

    @router.get(
        "/{campaign_id}",
        responses=error_responses(401, 404, 503),
        summary="A campaign's phase and counters",
    )
    def campaign_status(campaign_id: str) -> dict[str, Any]:
        """Rows read, enqueued, invalid and duplicates; calls by state and result code;
        backlog, calls in flight and done; calls per minute and the estimated time left."""
        return known(campaign_id).progress(campaign_id).to_dict()

    @router.post(
        "/{campaign_id}/pause",
        responses=error_responses(401, 404, 409, 503),
        summary="Send none of its calls until resumed",
    )
    def pause_campaign(campaign_id: str) -> dict[str, Any]:
        """Takes effect at once for every worker; calls already ringing finish."""
        _, status = act(control.pause, campaign_id)
        return status

    @router.post(
        "/{campaign_id}/resume",
        responses=error_responses(401, 404, 409, 503),
        summary="Send its calls again",
    )
    def resume_campaign(campaign_id: str) -> dict[str, Any]:
        _, status = act(control.resume, campaign_id)
        return status

    @router.post(
        "/{campaign_id}/cancel",
        responses=error_responses(401, 404, 409, 503),
        summary="Cancel it for good",
    )
    def cancel_campaign(campaign_id: str) -> dict[str, Any]:
        """Queued calls become CANCELLED and are never sent; calls already placed finish."""
        (cancelled, _), status = act(control.cancel, campaign_id)
        return {**status, "cancelled_calls": cancelled}

    @router.get(
        "/{campaign_id}/report",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/csv": {}}, "description": "One row per row of the file"},
            **error_responses(401, 404, 503),
        },
        summary="Every row of the file and its outcome, as CSV",
    )
    def campaign_report(campaign_id: str) -> StreamingResponse:
        """Streamed as it is read from Redis; numbers masked."""
        return StreamingResponse(
            _csv_text(known(campaign_id), campaign_id),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-report.csv"'
            },
        )

    return router


def _create(store: CampaignStore, upload: UploadFile, options: CampaignOptions) -> Campaign:
    """Save the upload and create its campaign; when it is refused, the saved file goes again."""
    path = save_upload(upload, store.runtime.settings.data_dir)
    try:
        return _create_from(store, path, options, default_name=Path(upload.filename or "").name)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _create_from(
    store: CampaignStore, path: Path, options: CampaignOptions, *, default_name: str
) -> Campaign:
    now_ms = store.ledger.server_time_ms()
    until_ms = options.until_ms(now_ms)
    if until_ms is not None and until_ms <= now_ms:
        raise problem(422, "until", "is past: a campaign's deadline must be in the future")
    try:
        return store.create(
            options.kind,
            path,
            template=options.template,
            name=options.name or default_name[:MAX_NAME_CHARS] or None,
            rate=options.rate,
            allow_duplicates=options.allow_duplicates,
            errors_path=errors_path_for(path),
            window=options.window,
            days=options.days,
            until_ms=until_ms,
        )
    except InvalidInstruction as exc:
        raise ApiProblem(422, exc.errors) from None
    except CampaignError as exc:
        # The form's own fields were checked before: what is left is about the file.
        raise problem(422, "file", _without_path(str(exc), path)) from None


def _without_path(message: str, path: Path) -> str:
    """A store's message on one line, without the server's path of the upload."""
    return " ".join(message.replace(f"{path}: ", "").replace(str(path), "the file").split())


def _csv_text(store: CampaignStore, campaign_id: str) -> Iterator[str]:
    return (text for text, _ in report_csv_chunks(store, campaign_id))
