"""The HTTP face of a :class:`~rnncap.serve.captioner.Captioner`: one page and a JSON API.

    GET  /                       the page (static/index.html: plain HTML, CSS and JS)
    GET  /healthz                {"status": "ok"}
    GET  /api/model              the model card
    GET  /api/examples           the model's own test pictures the page offers
    GET  /api/examples/{i}.png   one of them
    POST /api/caption            a picture (multipart field "image", or a raw image/* body), or
                                 JSON {"features": [...]} or {"example": i}; ?beam_size=k
    GET  /docs, /openapi.json    FastAPI's API pages

Every error is JSON ``{"detail": "..."}``: 413 for a body over the upload limit, 415 for a
content type that is not a picture, multipart form or JSON, 400 for a picture that cannot be read
or has too many pixels, 422 for malformed parameters. Uploads are read into memory up to the
limit and handed to the captioner, which works in a private temporary folder it removes again.

This module turns HTTP into calls on the captioner; it does no maths and knows no model.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from rnncap.serve.captioner import Batcher, Captioner, ImageError

__all__ = ["create_app"]

_IMAGE_TYPES = ("image/", "application/octet-stream")


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over `limit` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"the upload is over the limit of {limit:,} bytes")
    return bytes(body)


async def _image_from_multipart(request: Request, body: bytes) -> tuple[bytes, str]:
    """The bytes and file name of the form's "image" field (400/415 naming what is wrong)."""
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as err:  # Starlette raises its own MultiPartException and HTTPException
        raise HTTPException(400, f"malformed multipart form: {getattr(err, 'detail', err)}") from None
    try:
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, 'the form has no file field named "image"')
        ctype = (upload.content_type or "application/octet-stream").lower()
        if not ctype.startswith(_IMAGE_TYPES):
            raise HTTPException(415, f"{upload.filename or 'the upload'} is {ctype}, not an image")
        return await upload.read(), upload.filename or "upload"
    finally:
        await form.close()


def create_app(captioner: Captioner, max_batch: int = 32) -> FastAPI:
    """The FastAPI application serving `captioner`, decoding up to `max_batch` requests together."""
    app = FastAPI(title="rnncap", version=__import__("rnncap").__version__,
                  description="Image captioning with recurrent networks, in NumPy.")
    batcher = Batcher(captioner.decode, max_batch=max_batch)
    app.state.captioner, app.state.batcher = captioner, batcher
    app.router.add_event_handler("shutdown", batcher.close)
    limits = captioner.limits

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return (resources.files("rnncap.serve") / "static" / "index.html").read_text(encoding="utf-8")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/api/model")
    def model_card():
        return captioner.card()

    @app.get("/api/examples")
    def examples():
        return [{"id": i, "name": e["name"], "url": f"/api/examples/{i}.png",
                 "has_truth": e.get("objects") is not None}
                for i, e in enumerate(captioner.examples)]

    @app.get("/api/examples/{i}.png", include_in_schema=False)
    def example_image(i: int):
        if not 0 <= i < len(captioner.examples):
            raise HTTPException(404, f"no example {i}; there are {len(captioner.examples)}")
        return FileResponse(captioner.examples[i]["path"], media_type="image/png")

    @app.post("/api/caption")
    async def caption(request: Request,
                      beam_size: int = Query(3, ge=1, le=limits.max_beam_size,
                                             description="beam width of the alternatives")):
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _read_body(request, limits.max_upload_bytes)
        example = None
        try:
            if ctype == "multipart/form-data":
                data, name = await _image_from_multipart(request, body)
                feats = await run_in_threadpool(captioner.features_from_bytes, data, name)
            elif ctype.startswith(_IMAGE_TYPES):
                feats = await run_in_threadpool(captioner.features_from_bytes, body, "the upload")
            elif ctype == "application/json":
                import json

                try:
                    doc = json.loads(body)
                except ValueError as err:
                    raise HTTPException(400, f"the body is not valid JSON: {err}") from None
                if not isinstance(doc, dict) or ("features" in doc) == ("example" in doc):
                    raise HTTPException(400, 'send JSON {"features": [numbers]} or {"example": id}')
                if "features" in doc:
                    feats = captioner.check_features(doc["features"])
                else:
                    example = doc["example"]
                    if not isinstance(example, int) or not 0 <= example < len(captioner.examples):
                        raise HTTPException(400, f"example must be an id from 0 to "
                                                 f"{len(captioner.examples) - 1}, got {example!r}")
                    path = captioner.examples[example]["path"]
                    feats = await run_in_threadpool(captioner.features_from_bytes,
                                                    path.read_bytes(), path.name)
            else:
                raise HTTPException(415, f"content type {ctype or '(none)'} is not accepted; send a "
                                         "picture (multipart field 'image' or image/*) or JSON")
        except (ImageError, ValueError) as err:
            raise HTTPException(400, str(err)) from None
        result = await run_in_threadpool(batcher.submit, feats, beam_size)
        result = dict(result)
        result["truth"] = None if example is None else captioner.truth(result["greedy"]["caption"], example)
        result["example"] = example
        return JSONResponse(result)

    return app
