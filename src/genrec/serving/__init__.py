"""Serving: a trained run directory behind an HTTP API and a web page.

``genrec serve RUN_DIR`` runs ``create_app(RUN_DIR)`` under uvicorn. ``bundle`` loads the run and
what answering needs, once; ``app`` holds the routes; ``schemas`` the request/response bodies;
``search`` the text index; ``metrics`` request counters and latency histograms; ``static/``
the page.
FastAPI is imported only by ``genrec.serving.app``, so the rest of genrec never needs it.
"""
