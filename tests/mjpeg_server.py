"""A real HTTP/MJPEG camera on loopback (multipart/x-mixed-replace), for live-source tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2


class MjpegCamera:
    def __init__(self, video: str, port: int, fps: float = 10.0):
        self.frames = []
        cap = cv2.VideoCapture(video)
        while True:
            ok, img = cap.read()
            if not ok:
                break
            self.frames.append(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
        self.port, self.fps = port, fps
        self.server: ThreadingHTTPServer | None = None
        # Set: the camera hangs, connection open and nothing sent (a wedged camera, as a read sees it).
        self.paused = threading.Event()

    def start(self) -> None:
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while cam.server is not None:
                        if cam.paused.is_set():
                            time.sleep(0.05)
                            continue
                        jpg = cam.frames[i % len(cam.frames)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                        i += 1
                        time.sleep(1 / cam.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        server, self.server = self.server, None
        if server:
            server.shutdown()
            server.server_close()
