"""The thin WSGI hot path: `POST /putGradient` and `GET /getParameter` without Flask.

Flask stays the framework of the server's API; these two calls are most of its traffic and each
must cost close to what the transport costs. Through Flask a push paid for a request context,
URL matching, `Request`/`Response` objects and header wrappers: about a third of the server's CPU
per LeNet5 push (bench/ps_push.py). This callable sits in front of the Flask app in the same
server: it answers those two (method, path) pairs itself, reading the environ directly, and hands
every other request (and a chunked push body, HEAD, a wrong method) to Flask unchanged. Both paths
call the same `routes.push_pull` functions and render errors with the same `routes.errors`
answers, so status codes, bodies, headers, admission, the ledger and the journal are identical.

A push body is read once, with `readinto`, into one buffer of exactly Content-Length bytes
(checked against `--max-body-mb` before any read); its tensors are views of that buffer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.exceptions import HTTPException, InternalServerError, RequestEntityTooLarge

from owtrain import codec
from owtrain.errors import OwtrainError
from param_server.routes import push_pull
from param_server.routes.errors import PUSH_PATH, Answer, http_answer, owtrain_answer
from param_server.runtime import Runtime

log = logging.getLogger(__name__)
PULL_PATH = "/getParameter"
JSON = [("Content-Type", "application/json")]
Handler = Callable[[dict[str, Any]], tuple[int, list[tuple[str, str]], bytes | bytearray]]


class HotPath:
    """WSGI app: push and pull served here, everything else by `app` (the Flask app)."""

    def __init__(self, rt: Runtime, app: Callable[..., Iterable[bytes]]) -> None:
        self.rt, self.app = rt, app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if path == PUSH_PATH and method == "POST" and environ.get("CONTENT_LENGTH") \
                and "HTTP_TRANSFER_ENCODING" not in environ:
            return self._serve(environ, start_response, self._push)
        if path == PULL_PATH and method == "GET":
            return self._serve(environ, start_response, self._pull)
        return self.app(environ, start_response)

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any], handler: Handler) -> list[Any]:
        try:
            status, headers, body = handler(environ)
        except OwtrainError as exc:
            status, headers, body = _json(owtrain_answer(exc, self.rt.telemetry, environ["REQUEST_METHOD"],
                                                         environ["PATH_INFO"]))
        except HTTPException as exc:
            status, headers, body = _json(self._http_answer(exc, environ))
        except Exception as exc:  # a bug, as Flask would treat it: logged with its traceback, 500
            log.exception("Exception on %s [%s]", environ.get("PATH_INFO"), environ.get("REQUEST_METHOD"))
            status, headers, body = _json(self._http_answer(InternalServerError(original_exception=exc), environ))
        if status != 304:
            headers.append(("Content-Length", str(len(body))))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [body] if body else []

    def _http_answer(self, exc: HTTPException, environ: dict[str, Any]) -> Answer:
        return http_answer(exc, self.rt.cfg.max_body_bytes, self.rt.telemetry, environ["REQUEST_METHOD"],
                           environ["PATH_INFO"])

    def _push(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        c = push_pull.admit_push(self.rt, environ.get("HTTP_AUTHORIZATION"))
        length = int(environ["CONTENT_LENGTH"])  # plain digits: owtrain.wsgi.StrictHandler checked them
        if length > self.rt.cfg.max_body_bytes:
            raise RequestEntityTooLarge()
        body = environ["wsgi.input"].read_exactly(length)
        status, headers, answer = _json((200, push_pull.take_push(self.rt, c, body), []))
        return status, headers, answer

    def _pull(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes | bytearray]:
        args: dict[str, str] = {}
        for key, value in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True):
            args.setdefault(key, value)
        snap, newer = push_pull.pull(self.rt, environ.get("HTTP_AUTHORIZATION"), args.get("have"), args.get("wait"))
        version = [("X-Owtrain-Version", str(snap.version))]
        if not newer:
            return 304, version, b""
        return 200, [("Content-Type", codec.CONTENT_TYPE), *version], snap.body()


def _json(answer: Answer) -> tuple[int, list[tuple[str, str]], bytes]:
    """An answer as Flask's `jsonify` writes it (compact, sorted keys, a final newline)."""
    status, body, headers = answer
    return status, [*JSON, *headers], json.dumps(body, separators=(",", ":"), sort_keys=True).encode() + b"\n"
