"""``openai``: any OpenAI-compatible ``/v1/chat/completions`` server (vLLM, transformers serve, ...).

Prompts of a batch are posted concurrently (a bounded thread pool). Each request is retried
with exponential backoff (honouring ``Retry-After``) on HTTP 429, 5xx, timeouts and
connection errors; other 4xx answers fail that prompt at once. A prompt that still fails
comes back as an :class:`EngineFailure` in its slot, so one bad request does not sink the
batch. With a schema the request carries ``response_format={"type": "json_schema", ...}``;
servers that ignore it (transformers serve does) are covered by the caller's
parse / validate / retry loop, and a server that *rejects* the field with a 400 gets the
request once more without it (remembered for the rest of the run).

``seed`` and ``temperature`` are requests, not guarantees: vLLM honours both per request, but
transformers serve (5.23) decodes with the served model's generation config (greedy when it
says ``do_sample=false``, as the embedded tiny model's does, whatever ``temperature`` says)
and applies ``seed`` to torch's global RNG; there a retry with a new seed can return the same
reply, and the row is quarantined after its retries (tests/test_openai_serve.py).

The API key is read only from the environment variable named by ``synth.openai_api_key_env``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional

from .base import Engine, EngineFailure, EngineUnavailable, Messages, register_engine
from .schema import grammar_schema

log = logging.getLogger("humanllm")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


@register_engine("openai")
class OpenAIEngine(Engine):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 60.0,
        max_attempts: int = 5,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        try:
            import requests  # noqa: F401  (ray[default] depends on it)
        except ImportError as exc:  # pragma: no cover - requests ships with ray[default]
            raise EngineUnavailable("the openai engine needs the 'requests' package") from exc
        if not base_url:
            raise EngineUnavailable("synth.openai_base_url is not set (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise EngineUnavailable("synth.openai_model is not set (the model name the server serves)")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = max(1, int(concurrency))
        self.timeout_s = float(timeout_s)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff_s = float(backoff_s)
        self.backoff_max_s = float(backoff_max_s)
        self.send_response_format = True
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai-engine")
        # Counters for reports and tests: what actually went over the wire.
        self.http_requests = 0
        self.http_retries = 0
        self._lock = threading.Lock()
        self._sessions: List[Any] = []  # every thread's requests.Session, closed by close()

    @classmethod
    def from_config(cls, cfg: Any) -> "OpenAIEngine":
        s = cfg.synth
        return cls(
            s.openai_base_url,
            s.openai_model,
            api_key_env=s.openai_api_key_env,
            concurrency=s.openai_concurrency,
            timeout_s=s.openai_timeout_s,
            max_attempts=s.openai_max_attempts,
            backoff_s=s.openai_backoff_s,
        )

    @classmethod
    def identity(cls, cfg: Any) -> str:
        return f"openai:{cfg.synth.openai_model}@{(cfg.synth.openai_base_url or '').rstrip('/')}"

    def describe(self) -> str:
        return f"openai:{self.model}@{self.url}"

    def close(self) -> None:
        """Stop the request threads and close every thread's HTTP session (its pooled connections)."""
        self._pool.shutdown(wait=False)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for sess in sessions:
            try:
                sess.close()
            except Exception:  # pragma: no cover - closing sockets of a dead server
                pass

    # -- HTTP ----------------------------------------------------------------------------
    def _session(self):
        sess = getattr(self._local, "session", None)
        if sess is None:
            import requests

            sess = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(sess)
        return sess

    def _headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, messages: Messages, schema, max_new_tokens, temperature, top_p, seed) -> Dict[str, Any]:
        body: Dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "top_p": float(top_p),
            "seed": int(seed) & 0x7FFF_FFFF,
            "n": 1,
            "stream": False,
        }
        if schema is not None and self.send_response_format:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": str(schema.get("title") or "reply"), "schema": grammar_schema(schema)},
            }
        return body

    def _post_once(self, body: Dict[str, Any]) -> str:
        import requests

        with self._lock:
            self.http_requests += 1
        try:
            resp = self._session().post(self.url, json=body, headers=self._headers(), timeout=self.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code in RETRY_STATUS:
            retry_after = None
            try:
                retry_after = float(resp.headers.get("Retry-After", ""))
            except ValueError:
                pass
            raise _Retryable(f"HTTP {resp.status_code}: {resp.text[:200]}", retry_after)
        if resp.status_code == 400 and "response_format" in body and "response_format" in resp.text:
            # The server does not do structured output; ask without it (validation still applies).
            log.warning("openai engine: server rejected response_format; continuing without it")
            self.send_response_format = False
            body = {k: v for k, v in body.items() if k != "response_format"}
            return self._post_once(body)
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            data = resp.json()
            content = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise RuntimeError(f"malformed completion: {type(exc).__name__}: {resp.text[:200]}") from None
        if content is None:
            raise RuntimeError("completion without content")
        return content

    def _complete(self, body: Dict[str, Any]) -> str:
        last = ""
        for attempt in range(self.max_attempts):
            try:
                return self._post_once(body)
            except _Retryable as exc:
                last = str(exc)
                if attempt + 1 >= self.max_attempts:
                    break
                delay = min(self.backoff_max_s, self.backoff_s * (2**attempt))
                if exc.retry_after is not None:
                    delay = min(self.backoff_max_s, max(delay, exc.retry_after))
                delay *= 1.0 + 0.25 * random.random()  # jitter: concurrent clients do not retry in lockstep
                with self._lock:
                    self.http_retries += 1
                log.debug("openai engine: %s; retry %d in %.2fs", last, attempt + 1, delay)
                time.sleep(delay)
            except Exception as exc:  # non-retryable: this prompt fails, the batch goes on
                return EngineFailure(str(exc))
        return EngineFailure(f"gave up after {self.max_attempts} attempts: {last}")

    def generate(
        self,
        prompts: List[Messages],
        *,
        schema: Optional[dict],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seeds: List[int],
    ) -> List[str]:
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        bodies = [self._body(p, schema, max_new_tokens, temperature, top_p, s) for p, s in zip(prompts, seeds)]
        return list(self._pool.map(self._complete, bodies))
