"""The exec subresource's websocket stream (``v4``/``v5.channel.k8s.io``), for scripted and for running pods.

Why written here: the API server side of the channel protocol is small (one byte of channel id before each
binary frame: 0 stdin, 1 stdout, 2 stderr, 3 the final ``Status``, 4 resize) and no Python package serves it.
For a pod the process kubelet runs, the command runs inside the container (:meth:`ProcessKubelet.open_exec`)
and its stdin, stdout and stderr are pumped both ways until it exits; the ``Status`` then carries its exit
code as the real server reports it (``NonZeroExitCode``, 128 + signal for a killed command).
"""

from __future__ import annotations

import json
import struct
import subprocess
import threading
from typing import IO, Any

Obj = dict[str, Any]


def status_frame(code: int) -> Obj:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


class WebSocket:
    """Server side of one upgraded connection: unmasked frames out, masked frames in."""

    def __init__(self, rfile: IO[bytes], wfile: IO[bytes], connection: Any) -> None:
        self.rfile, self.wfile, self.connection = rfile, wfile, connection
        self._write = threading.Lock()

    def send(self, payload: bytes, opcode: int = 0x2) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + struct.pack(">H", n)
        else:
            header += bytes([127]) + struct.pack(">Q", n)
        with self._write:
            try:
                self.wfile.write(header + payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, ValueError):
                pass

    def channel(self, channel: int, data: bytes) -> None:
        self.send(bytes([channel]) + data)

    def finish(self, code: int) -> None:
        self.channel(3, json.dumps(status_frame(code)).encode())
        self.send(b"", opcode=0x8)

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next (opcode, payload), or None when the client went away."""
        try:
            head = self.rfile.read(2)
            if len(head) < 2:
                return None
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
        except (TimeoutError, OSError):
            return None
        return opcode, payload

    def read_stdin_line(self, timeout: float = 10.0) -> str:
        """Client frames until a stdin line (channel 0) arrives or the client goes quiet (scripted pods)."""
        self.connection.settimeout(timeout)
        data = b""
        while b"\n" not in data:
            frame = self.read_frame()
            if frame is None or frame[0] == 0x8:
                break
            opcode, payload = frame
            if opcode in (0x1, 0x2) and payload[:1] == b"\x00":
                data += payload[1:]
        return data.decode(errors="replace")


def pump(ws: WebSocket, process: subprocess.Popen[bytes]) -> int:
    """Connect a running command to the websocket until it exits; returns its exit code."""

    def out(stream: IO[bytes] | None, channel: int) -> None:
        if stream is None:
            return
        for chunk in iter(lambda: stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536), b""):
            ws.channel(channel, chunk)

    def stdin() -> None:
        if process.stdin is None:
            return
        while True:
            frame = ws.read_frame()
            if frame is None or frame[0] == 0x8:
                break
            opcode, payload = frame
            if opcode in (0x1, 0x2) and payload[:1] == b"\x00":
                try:
                    process.stdin.write(payload[1:])
                    process.stdin.flush()
                except (BrokenPipeError, ValueError):
                    break
        with_suppressed_close(process.stdin)

    readers = [
        threading.Thread(target=out, args=(process.stdout, 1), daemon=True),
        threading.Thread(target=out, args=(process.stderr, 2), daemon=True),
    ]
    for t in readers:
        t.start()
    threading.Thread(target=stdin, daemon=True).start()
    code = process.wait()
    for t in readers:
        t.join(timeout=5)
    return 128 - code if code < 0 else code


def with_suppressed_close(stream: IO[bytes]) -> None:
    try:
        stream.close()
    except (BrokenPipeError, OSError):
        pass
