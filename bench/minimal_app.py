"""The baseline of bench/callbacks.py: a FastAPI endpoint that does nothing but answer 204."""

from __future__ import annotations

from fastapi import FastAPI, Response

app = FastAPI()


@app.post("/callbacks/cm/{instruction_id}/{signature}", status_code=204)
async def callback(instruction_id: str, signature: str) -> Response:
    return Response(status_code=204)
