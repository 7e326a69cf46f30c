#!/usr/bin/env python3
"""The seed Package example in Python: this program packages itself as a
container image and runs replicas of itself, each serving "hello from
<hostname>" over HTTP.

    pip install ./bindings/python                  # once
    python3 examples/python/containerize.py        # port 8080, 2 replicas

Outside a container, containerize() builds an image of this very program
(the Python interpreter, its standard library, the metaparticle package and
this directory; no Dockerfile, no daemon), loads it into Docker or Podman
($DOCKER_HOST), starts the replicas and streams their output, each line
prefixed with the replica's name, until Ctrl-C, which removes them. Replica
i is reachable on host port PORT + i.

    --repository 127.0.0.1:5000/team --publish    push the image, then run it
    --kubernetes                                   deploy to Kubernetes instead
                                                   (needs --publish)
"""

import argparse
import http.server
import socket
import sys

import metaparticle

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("port", type=int, nargs="?", default=8080, help="the port to serve on (default 8080)")
parser.add_argument("replicas", type=int, nargs="?", default=2, help="how many replicas (default 2)")
parser.add_argument("--repository", help="image prefix, e.g. docker.io/user or 127.0.0.1:5000/team")
parser.add_argument("--publish", action="store_true", help="push the image to --repository")
parser.add_argument("--kubernetes", action="store_true", help="run on Kubernetes (the current kubeconfig)")
args = parser.parse_args()


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {socket.gethostname()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"{socket.gethostname()} answered {self.path}")

    def log_message(self, format: str, *a: object) -> None:  # one line per request is printed above
        pass


@metaparticle.containerize(
    ports=[args.port],
    replicas=args.replicas,
    repository=args.repository,
    publish=args.publish,
    runner="kubernetes" if args.kubernetes else None,
)
def main() -> int:
    # Runs in each replica. `docker stop` sends SIGTERM, which containerize
    # turns into SystemExit for PID 1, so the finally block runs.
    host = socket.gethostname()
    server = http.server.ThreadingHTTPServer(("", args.port), Hello)
    print(f"hello from {host}, serving on port {args.port}")
    try:
        server.serve_forever()
    finally:
        print(f"{host} stopping")
        server.server_close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except metaparticle.MetaparticleError as e:
        sys.exit(f"containerize failed ({e.code_name}): {e}")
