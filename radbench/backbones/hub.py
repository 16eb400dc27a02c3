"""One look at the Hugging Face hub before loading from it: unreachable (no network, a firewall), the process goes
offline (HF_HUB_OFFLINE=1) so that weights come from the local cache at once instead of after a minute of the hub
client's retries per file; the one-line error then names the cache and how to fill it."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from urllib.parse import urlparse

TIMEOUT_SECONDS = 3.0


@lru_cache(maxsize=1)
def offline_if_unreachable() -> bool:
    """True when the hub was unreachable and this process now runs offline (or was told so already)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=TIMEOUT_SECONDS).close()
        return False
    except OSError:
        pass
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:  # the hub client reads its constant at import; set it too where it is already imported
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except ImportError:
        pass
    return True

