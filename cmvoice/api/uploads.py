"""Campaign files uploaded to the API: parsed as they stream in, bounded, kept under data_dir."""

from __future__ import annotations

import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePath

from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cmvoice.api.problems import ApiProblem, bounded_stream, problem
from cmvoice.errors import NOTHING, FieldError

#: Largest campaign upload accepted (the whole multipart body): about a million rows.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
#: Largest text field of the form (the template is the longest).
MAX_FIELD_BYTES = 64 * 1024
#: Text fields accepted besides the file: more is not a campaign upload.
MAX_FIELDS = 16
#: Suffixes kept from the uploaded file's name: they tell CSV from JSON lines.
KEPT_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson", ".json", ".txt"})
#: Folder under CMVOICE_DATA_DIR that holds the uploads and their errors files.
UPLOADS_FOLDER = "uploads"


async def read_campaign_form(request: Request) -> tuple[dict[str, str], UploadFile]:
    """The form's text fields and its ``file``; the file waits in a spooled temporary file
    (in memory up to 1 MiB, then on disk), never whole in memory. Close it when done."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise problem(
            415, "body", "must be multipart/form-data with a file field", content_type or NOTHING
        )
    parser = MultiPartParser(
        request.headers,
        bounded_stream(request, MAX_UPLOAD_BYTES),
        max_files=1,
        max_fields=MAX_FIELDS,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise problem(422, "body", f"is not a usable multipart form: {exc.message}") from None
    return _split(form)


def _split(form: FormData) -> tuple[dict[str, str], UploadFile]:
    fields: dict[str, str] = {}
    upload: UploadFile | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name == "file":
                upload = value
                continue
            value.file.close()
            raise problem(422, name, "only the field named file may be a file")
        fields[name] = value
    if upload is None:
        raise ApiProblem(
            422, [FieldError("file", "a campaign file is required (CSV or JSON lines)", NOTHING)]
        )
    return fields, upload


def save_upload(upload: UploadFile, data_dir: Path) -> Path:
    """Copy the upload to ``<data_dir>/uploads/<UTC time>-<random><suffix>`` and return the path.

    The suffix of the client's file name is kept when it tells the format; the name itself is
    not used, so no client can choose where the file goes.
    """
    folder = data_dir / UPLOADS_FOLDER
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    suffix = PurePath(upload.filename or "").suffix.lower()
    stamp = datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stamp}-{secrets.token_hex(4)}{suffix if suffix in KEPT_SUFFIXES else ''}"
    upload.file.seek(0)
    with path.open("xb") as out:
        shutil.copyfileobj(upload.file, out, length=1024 * 1024)
    return path


def errors_path_for(upload_path: Path) -> Path:
    """Where the errors file of the campaign of ``upload_path`` goes: beside it."""
    return upload_path.with_name(f"{upload_path.stem}-errors.csv")
