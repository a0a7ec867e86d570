"""The Hugging Face hub, where timm and open_clip keep pretrained weights: whether a model's
weights are in the local cache, and a quick offline check before a hub client's retries."""

from __future__ import annotations

import os

HUB_HOST = ("huggingface.co", 443)
WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
                "open_clip_pytorch_model.bin")


def cache_dir() -> str:
    """The Hugging Face cache folder (``HF_HOME``), as messages name it."""
    return os.environ.get("HF_HOME") or os.path.join("~", ".cache", "huggingface")


def cached(hub_id: str, files: tuple[str, ...] = WEIGHT_FILES) -> bool:
    """Whether the Hugging Face cache holds one of the weight ``files`` of ``hub_id`` (no
    network)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(hub_id, f), str) for f in files)


def reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers a connection within ``timeout`` seconds."""
    import socket

    try:
        socket.create_connection(HUB_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def check_available(hub_id: str | None, files: tuple[str, ...] = WEIGHT_FILES) -> None:
    """Raise ``ConnectionError`` at once when ``hub_id``'s weights are neither cached nor
    downloadable (offline), rather than after the hub client's retries."""
    if hub_id and not cached(hub_id, files) and not reachable():
        raise ConnectionError(f"{HUB_HOST[0]} is not reachable")
