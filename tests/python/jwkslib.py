"""Helpers of the multi-tenant trust tests: keys as JWKs, a JWKS server the
test controls, the KM-S's log events, one request and its Result.

- ``public_pem(key)``, ``private_pem(key)``: PEM of a ``cryptography`` key.
- ``jwk(key, kid, **members)``: the public JWK of an EC, RSA, Ed25519 (or
  X25519) key, with extra members; ``jwks(*jwk_dicts)`` the document bytes.
- ``JwksServer(tls=(cert, key) or None, bad_tls=(cert, key) or None)``: an
  HTTP(S) server on 127.0.0.1 in a thread. Set ``body``, ``status``,
  ``delay`` (seconds before answering), ``length`` (False: no
  Content-Length, the body ends with the connection) and ``bad_cert`` (True:
  present the ``bad_tls`` certificate) at any time; ``hits`` counts GETs;
  ``url`` is the document's URL; ``close()`` stops it.
- ``events(kms, name)``, ``wait_event(kms, name, after=0, match=None)``:
  the KM-S's JSON log lines of one event, and waiting for one past the
  first ``after`` of them.
- ``hup(kms)``: SIGHUP, then wait for the reload to be done (``reload_done``
  event); returns that event.
- ``ask(kms, requester, token, services=("v2x.a",))``: one request; returns
  the Result dict.
- ``stored(kms, requester)``: (val_servers rows, key_formats rows) of one
  VAL server.
"""

import base64
import http.server
import json
import os
import signal
import ssl
import threading
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519

import kmswire
from conftest import wait_until


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return _b64(n.to_bytes(size, "big"))


def public_pem(key):
    pub = key.public_key() if hasattr(key, "public_key") else key
    return pub.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def private_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


_CURVES = {"secp256r1": ("P-256", 32), "secp384r1": ("P-384", 48), "secp521r1": ("P-521", 66)}


def jwk(key, kid=None, **members):
    pub = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        crv, size = _CURVES[pub.curve.name]
        n = pub.public_numbers()
        d = {"kty": "EC", "crv": crv, "x": _uint(n.x, size), "y": _uint(n.y, size)}
    elif isinstance(pub, rsa.RSAPublicKey):
        n = pub.public_numbers()
        d = {"kty": "RSA", "n": _uint(n.n), "e": _uint(n.e)}
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        d = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
    elif isinstance(pub, x25519.X25519PublicKey):
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        d = {"kty": "OKP", "crv": "X25519", "x": _b64(raw)}
    else:
        raise TypeError(type(pub))
    if kid is not None:
        d["kid"] = kid
    d.update(members)
    return d


def jwks(*keys):
    return json.dumps({"keys": list(keys)}).encode()


class JwksServer:
    def __init__(self, tls=None, bad_tls=None):
        self.body = jwks()
        self.status = 200
        self.delay = 0.0
        self.length = True
        self.bad_cert = False
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self):  # noqa: N802 (the library's name)
                server.hits += 1
                if server.delay:
                    time.sleep(server.delay)
                body = server.body
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    if server.length:
                        self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass  # the KM-S gave up (size bound, timeout): as it should

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            if bad_tls is not None:
                bad = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                bad.load_cert_chain(*bad_tls)

                def pick(sock, name, _ctx):
                    if server.bad_cert:
                        sock.context = bad
                ctx.sni_callback = pick
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        port = self.httpd.server_address[1]
        # "localhost": the certificate names it, and curl sends it as SNI
        host = "localhost" if tls is not None else "127.0.0.1"
        self.url = f"{scheme}://{host}:{port}/.well-known/jwks.json"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def events(kms, name):
    return [e for e in kms.log_events() if e.get("event") == name]


def wait_event(kms, name, after=0, match=None, timeout=30):
    def found():
        got = [e for e in events(kms, name)[after:] if match is None or match(e)]
        return got[0] if got else None
    return wait_until(found, timeout, 0.1, f"log event {name} of {kms.kms_id}")


def hup(kms):
    before = len(events(kms, "reload_done"))
    os.kill(kms.pid, signal.SIGHUP)
    return wait_event(kms, "reload_done", after=before)


def ask(kms, requester, token, services=("v2x.a",)):
    req = kmswire.request(requester, token, [kmswire.service(s) for s in services])
    rid = kms.send(req)
    _, resp = kms.result(rid, timeout=60)
    assert resp is not None and resp["requestId"] == rid
    return resp


def stored(kms, requester):
    vs = kms.sql(f"SELECT count(*) FROM val_servers WHERE requester_identity = '{requester}'")
    kf = kms.sql(f"SELECT count(*) FROM key_formats WHERE requester_identity = '{requester}'")
    return int(vs[0][0]), int(kf[0][0])
