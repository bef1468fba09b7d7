"""`rnncap serve`: a web page and a JSON API over a trained checkpoint.

The server is FastAPI on uvicorn, an optional extra (``pip install 'rnncap[serve]'``):

- :mod:`rnncap.serve.captioner` holds the restored model and turns pictures into captions;
- :mod:`rnncap.serve.app` turns HTTP into calls on it;
- ``static/index.html`` is the page: one file of plain HTML, CSS and JavaScript.

This package does NOT train, evaluate or write anything outside a temporary folder.
"""

from __future__ import annotations

__all__ = ["serve", "MAX_PIXELS"]

# The largest picture (width x height) the server decodes by default: stricter than the 64
# megapixels rnncap's image loader takes from files (rnncap.vision.image.MAX_PIXELS), since a
# server decodes several uploads at once (3 bytes a pixel: 120 MB each); never above the loader's.
MAX_PIXELS = 40_000_000


def serve(checkpoint, host: str = "127.0.0.1", port: int = 8000, *, max_upload_mb: float = 10.0,
          max_pixels: int = MAX_PIXELS, max_batch: int = 32, announce=print) -> None:
    """Load `checkpoint` and serve it until interrupted.

    Raises:
        ImportError naming the extra to install when FastAPI or uvicorn is missing.
        ValueError when `max_pixels` is above the image loader's limit (see :class:`Limits`).
    """
    try:
        import uvicorn

        from rnncap.serve.app import create_app
    except ImportError as err:
        raise ImportError(f"rnncap serve needs FastAPI and uvicorn ({err.name} is missing): "
                          "pip install 'rnncap[serve]'") from None
    from rnncap.serve.captioner import Captioner, Limits

    limits = Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_pixels=max_pixels)
    app = create_app(Captioner(checkpoint, limits), max_batch=max_batch)
    shown = f"[{host}]" if ":" in host else host
    announce(f"rnncap serve: {checkpoint} on http://{shown}:{port}/  (API docs: /docs; Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
