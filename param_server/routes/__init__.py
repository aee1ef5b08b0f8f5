"""The parameter server's HTTP routes, one module per concern (each a Flask blueprint factory):
`seed` (the seed-compatible paths: /getVersion, /getParameter, /putGradient, /getAccuracy),
`training` (worker registration and phase reports), `status` (read-only: /status, /api/history,
/metrics), `admin` (/admin/*), with `errors` (the error answers) and `common` (token checks, JSON
bodies) shared by them and by the thin WSGI hot path (`param_server/hotpath.py`), which serves
push and pull through `push_pull` without Flask.
"""
