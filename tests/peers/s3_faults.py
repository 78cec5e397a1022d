"""An S3 endpoint that fails chosen requests: a proxy in front of a moto server, for the tests of
what ubm does when S3 errors on an upload.

Usage: s3_faults.py PORT MOTO_ENDPOINT METHOD KEY_PART STATUS TIMES

Every request goes on to MOTO_ENDPOINT unchanged, except that a request with METHOD whose path
holds KEY_PART is answered with STATUS (an S3 error body), the first TIMES such requests (-1:
all of them). Each failed request is printed on stdout, one line each, so a test can see that the
fault happened.
"""
import http.client
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Faults:
    def __init__(self, method, key_part, status, times):
        self.method, self.key_part, self.status, self.left = method, key_part, status, times
        self.lock = threading.Lock()

    def should_fail(self, method, path):
        if method != self.method or self.key_part not in urllib.parse.unquote(path):
            return False
        with self.lock:
            if self.left == 0:
                return False
            if self.left > 0:
                self.left -= 1
            return True


def handler(moto, faults):
    target = urllib.parse.urlsplit(moto)

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if faults.should_fail(self.command, self.path):
                print(f"failed {self.command} {self.path} with {faults.status}", flush=True)
                error = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>InjectedFault</Code>" \
                        b"<Message>fault injected by the test</Message></Error>"
                self.send_response(faults.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            # A HEAD answer has no body but tells the object's length.
            length = response.getheader("Content-Length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            upstream.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        def log_message(self, *_):
            pass

    return Proxy


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    port, moto, method, key_part, status, times = sys.argv[1:]
    faults = Faults(method, key_part, int(status), int(times))
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler(moto, faults))
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
