"""File identity and fetching: SHA-256 of a file, and a bounded HTTP download (the only network code)."""

import hashlib
import http.client
import os
import urllib.request

_CHUNK = 1 << 20


def sha256_file(path):
    """The SHA-256 of the file at ``path``, as lowercase hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(url, dest, max_bytes, timeout=60):
    """Downloads ``url`` into the file ``dest``, refusing more than ``max_bytes``; any failure is an OSError.

    Tests replace this function (``freenet.data.files.fetch``) so that they never touch the network.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
            got = 0
            while chunk := response.read(_CHUNK):
                got += len(chunk)
                if got > max_bytes:
                    raise OSError(f"{url}: more than the expected {max_bytes} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except http.client.HTTPException as e:
        raise OSError(f"{url}: {type(e).__name__}: {e}") from None
