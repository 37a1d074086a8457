"""A POST over a bare socket, for requests no HTTP client would send (a lying Content-Length)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

#: Seconds to wait for the connection and for the server's answer.
DEFAULT_TIMEOUT_S = 5.0


def raw_post(
    base_url: str,
    path: str,
    headers: tuple[bytes, ...],
    body: bytes,
    *,
    end_input: bool,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> int | None:
    """POST ``body`` to ``path`` with exactly ``headers``; the status, or None if none came.

    ``end_input`` shuts our side after the body, for a server that would otherwise wait for
    bytes that never come. Use it only then: on end of input uvicorn drops the connection at
    once, while the app may still be working on the request.
    """
    address = urlsplit(base_url)
    request = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: receiver\r\nConnection: close\r\n"
    request += b"".join(line + b"\r\n" for line in headers) + b"\r\n" + body
    assert address.hostname is not None
    with socket.create_connection((address.hostname, address.port or 80), timeout_s) as sock:
        try:
            sock.sendall(request)
            if end_input:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (413) and close before reading everything
        answer = b""
        try:
            while b"\r\n" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
        except ConnectionResetError:
            pass
    if not answer:
        return None
    return int(answer.split(b" ", 2)[1])
