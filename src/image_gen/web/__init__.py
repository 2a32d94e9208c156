"""The review studio (``image-gen serve``): a thin web shell over the library's services.

Pages (Jinja2, a few lines of plain JS) sit on a JSON API whose shapes are the CLI's ``--json``; approve, reject,
re-run and batches call ``image_gen.api`` exactly as the CLI does, in a background thread. Starlette, Jinja2 and
uvicorn are imported only here and by ``cli/serve_cmd.py``.
"""
