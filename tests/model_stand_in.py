"""A stand-in for the local vLLM that answers in milliseconds: the OpenAI-compatible routes
the bot and the CLI use (/v1/models, /v1/chat/completions and /v1/completions, streamed or
not), answering with text taken from the prompt.

The fast test tier (`pytest -m "not vllm"`) points the tests that need *a* model, not vLLM
itself, at it. What it writes:
- with vLLM's structured outputs (`vllm_support.forced_answer`), exactly the forced text;
- otherwise the sentence of the prompt's sources that shares the most words with the
  question, with its source number, so answer verification has a grounded sentence to
  check; when the prompt has no sources, that the policies do not cover it.
Like vLLM it stops at `stop` strings and at `max_tokens` (counted roughly: a token per four
characters), reports usage, and answers 404 for a model it does not serve.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vllm_support import BASE_MODEL

from retrieval.sparse import STOP_WORDS
from serving.sentences import split_sentences

NOT_COVERED = "The policies I have do not cover that; please ask a dispatcher."
_SOURCE = re.compile(r'<source id="(\d+)">\n[^\n]*\n(.*?)\n</source>', re.DOTALL)
_QUESTION = re.compile(r"\n\nQuestion: (.*)\Z", re.DOTALL)
_WORD = re.compile(r"[a-z0-9][a-z0-9,.$-]*[a-z0-9]|[a-z0-9]")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,2}[.)])\s+")
_PIECE = re.compile(r"\S+\s*|\s+")  # what one streamed chunk carries: a word and its space


def forced_text(body: dict[str, Any]) -> str | None:
    """The text vLLM's structured outputs would force (`forced_answer` escapes it)."""
    outputs = body.get("structured_outputs") or {}
    pattern = outputs.get("regex") if isinstance(outputs, dict) else None
    pattern = pattern or body.get("guided_regex")
    if not isinstance(pattern, str):
        return None
    return re.sub(r"\\(.)", r"\1", pattern, flags=re.DOTALL)


def grounded_answer(prompt: str) -> str:
    """The source sentence closest to the question, cited; NOT_COVERED without sources."""
    asked = _QUESTION.search(prompt)
    question_words = _words(asked.group(1) if asked else prompt)
    best: tuple[int, str, str] | None = None
    for number, text in _SOURCE.findall(prompt):
        for line in text.splitlines():
            if not line.strip() or line.lstrip().startswith(("#", "|", ">")):
                continue
            for sentence in split_sentences(_LIST_MARKER.sub("", line)):
                if len(sentence.split()) < 4:
                    continue
                score = len(question_words & _words(sentence))
                if best is None or score > best[0]:
                    best = (score, number, sentence)
    if best is None:
        return NOT_COVERED
    _, number, sentence = best
    stripped = sentence.rstrip()
    if stripped[-1:] in ".!?":
        return f"{stripped[:-1]} [{number}]{stripped[-1]}"
    return f"{stripped} [{number}]."


def _words(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if word not in STOP_WORDS}


def _approximate_tokens(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


class CannedModelServer:
    """The stand-in, on an ephemeral port; `requests` records each generation request."""

    def __init__(self, *, chunk_delay_s: float = 0.02) -> None:
        # A pause between streamed chunks, as a model writing: answers stream over several
        # of the bot's update intervals, as they do from the CPU vLLM.
        self.chunk_delay_s = chunk_delay_s
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        # Polling every 0.05 s: shutdown() waits up to one poll (0.5 s by default).
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, body: dict[str, Any], prompt: str) -> tuple[list[str], str]:
        """The chunks to send and the finish reason, as vLLM would cut them."""
        text = forced_text(body)
        if text is None:
            text = grounded_answer(prompt)
        finish_reason = "stop"
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else stops:
            if stop and stop in text:
                text = text[: text.index(stop)]
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        pieces, used = [], 0
        for piece in _PIECE.findall(text):
            used += _approximate_tokens(piece)
            if limit is not None and used > int(limit):
                finish_reason = "length"
                break
            pieces.append(piece)
        return pieces, finish_reason

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self._json(404, {"error": {"message": "Not Found", "code": 404}})
                    return
                served = {
                    "id": BASE_MODEL,
                    "object": "model",
                    "created": 0,
                    "owned_by": "vllm",
                    "root": BASE_MODEL,
                    "parent": None,
                    "max_model_len": 2048,
                }
                self._json(200, {"object": "list", "data": [served]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                route = self.path.rstrip("/")
                if route not in ("/v1/chat/completions", "/v1/completions"):
                    self._json(404, {"error": {"message": "Not Found", "code": 404}})
                    return
                server.requests.append(body)
                if body.get("model") != BASE_MODEL:
                    message = f"The model `{body.get('model')}` does not exist."
                    error = {"message": message, "type": "NotFoundError", "code": 404}
                    self._json(404, {"error": error})
                    return
                chat = route == "/v1/chat/completions"
                prompt = _chat_prompt(body) if chat else str(body.get("prompt", ""))
                pieces, finish_reason = server.answer(body, prompt)
                usage = {
                    "prompt_tokens": _approximate_tokens(prompt),
                    "completion_tokens": sum(_approximate_tokens(p) for p in pieces),
                }
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                if body.get("stream"):
                    options = body.get("stream_options") or {}
                    events = _stream_events(
                        chat, pieces, finish_reason, usage if options.get("include_usage") else None
                    )
                    self._stream(events)
                else:
                    self._json(200, _whole_response(chat, "".join(pieces), finish_reason, usage))

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, events: Iterator[dict[str, Any]]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for index, event in enumerate(events):
                        if index > 1 and server.chunk_delay_s:
                            time.sleep(server.chunk_delay_s)
                        self._chunk(f"data: {json.dumps(event)}\n\n".encode())
                    self._chunk(b"data: [DONE]\n\n")
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading, as the bot does when it stops an answer

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _chat_prompt(body: dict[str, Any]) -> str:
    """The last user message: it holds the sources and the question (serving/prompts.py)."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # content parts
                return "".join(part.get("text", "") for part in content)
            return str(content or "")
    return ""


def _stream_events(
    chat: bool, pieces: list[str], finish_reason: str, usage: dict[str, int] | None
) -> Iterator[dict[str, Any]]:
    identifier = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": identifier,
            "object": kind,
            "created": int(time.time()),
            "model": BASE_MODEL,
            "choices": choices,
            **extra,
        }

    def choice(text: str, finish: str | None, role: bool = False) -> dict[str, Any]:
        if not chat:
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        delta = {"role": "assistant", "content": text} if role else {"content": text}
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    if chat:
        yield event([choice("", None, role=True)])  # vLLM opens with the role alone
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        yield event([choice(piece, finish_reason if last else None)])
    if not pieces:
        yield event([choice("", finish_reason)])
    if usage is not None:
        yield event([], usage=usage)


def _whole_response(
    chat: bool, text: str, finish_reason: str, usage: dict[str, int]
) -> dict[str, Any]:
    if chat:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": BASE_MODEL,
        "choices": [choice],
        "usage": usage,
    }
