"""An HTTP server on 127.0.0.1 for the download tests, and what a download leaves on disk.

The server serves bytes held in memory and can misbehave the ways real servers and
networks do: hang up part-way through a transfer, send a chunked body that breaks off, or
ignore Range and send the whole file again. It records every request with its Range
header, so a test can check what a resumed download asked for.
"""

from __future__ import annotations

import http.server
import re
import threading
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # for 206 answers and chunked bodies

    def do_GET(self):
        server = self.server
        asked = self.headers.get("Range")
        server.requests.append((self.path, asked))
        self.close_connection = True
        if self.path not in server.files:
            self.send_error(404)
            return
        body, chunked = server.files[self.path]
        start = 0
        if asked and server.honours_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", asked)[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Connection", "close")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        # A cut promises the whole payload (in Content-Length or the chunk's size), sends
        # only this many bytes of it, then hangs up.
        cut = server.cuts.pop(0) if server.cuts else None
        if chunked:
            self.wfile.write(f"{len(payload):x}\r\n".encode() + payload[:cut])
            if cut is None:
                self.wfile.write(b"\r\n0\r\n\r\n")
        else:
            self.wfile.write(payload[:cut])
        self.wfile.flush()

    def log_message(self, *args):
        pass


class LocalServer(http.server.ThreadingHTTPServer):
    """Serves `serve`d bytes on a free port of 127.0.0.1 from a background thread, until
    `close`. Answers `Range: bytes=N-` with 206 (416 past the end) unless told to ignore it."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, tuple[bytes, bool]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header or None)
        self.cuts: list[int] = []
        self.honours_range = True
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def serve(self, path: str, body: bytes, *, chunked: bool = False) -> str:
        """Serve `body` at `path` (with Content-Length, or chunked without one); its URL."""
        self.files[path] = (body, chunked)
        return self.url(path)

    def cut_next(self, *sizes: int) -> None:
        """The next answers send only this many bytes each, then hang up."""
        self.cuts.extend(sizes)

    def ignore_range(self) -> None:
        """From now on, answer every request with 200 and the whole file."""
        self.honours_range = False

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def files_under(directory: Path) -> list[str]:
    """Every file under `directory` (which may not exist), relative to it."""
    if not directory.exists():
        return []
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
