"""Serving: the uvicorn runner and its several processes (:mod:`run`, :mod:`spread`), the
security middleware (:mod:`security`: hosts, token, CSRF), request limits (:mod:`limits`) and
the JSON answer middleware sends itself (:mod:`responses`).

May import: uvicorn, Starlette, app.config. Nothing of the trials, the search or storage.
"""
