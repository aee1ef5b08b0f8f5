"""The bare stack for bench/serve_batching.py: Flask on owtrain's gevent WSGI server, parsing the
same JSON body and answering a fixed prediction, with no model, batcher or validation — the
ceiling any prediction server on this stack and machine can reach.

    .venv/bin/python bench/serve_bare.py PORT
"""

from __future__ import annotations

import sys

from flask import Flask, Response, request

from owtrain.parse import json_object
from owtrain.wsgi import NoDelayWSGIServer

ANSWER = ('{"model": "mnist", "version": 1, "predictions": [{"class": "0", "class_index": 0, '
          '"probabilities": [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]}]}')


def main(port: int) -> None:
    app = Flask("bare")

    @app.post("/v1/models/mnist:predict")
    def predict() -> Response:
        if json_object(request.get_data(cache=False)) is None:
            return Response('{"error": "not JSON"}', status=400, mimetype="application/json")
        return Response(ANSWER, mimetype="application/json")

    @app.get("/metrics")
    def metrics() -> Response:
        return Response("", mimetype="text/plain")

    NoDelayWSGIServer(("127.0.0.1", port), app, log=None).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]))
