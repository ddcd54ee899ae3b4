"""An independent HBONE client (Python ssl + h2) for interop tests.

Usage: h2_hbone_client.py '<json>' where json holds
  host, port, cert (chain PEM file, leaf first), key, ca (roots PEM file),
  optional server_hostname (SNI; none by default),
  and either one request's fields or "requests": [ ... ] run in order on ONE connection.
A request has:
  authority (string; null or absent = no :authority header), method (default "CONNECT"),
  payload (string sent as DATA once the answer is 200), headers ([[name, value], ...]).
Prints one JSON line per request:
  {"status", "reset", "echo", "peer_san", "alpn", "error"}
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events

TIMEOUT_S = 10


def tls_connect(cfg):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(['h2'])
    ctx.check_hostname = False  # HBONE checks the URI SAN, not a host name (the test asserts it)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cfg['cert'], cfg['key'])
    ctx.load_verify_locations(cfg['ca'])
    raw = socket.create_connection((cfg['host'], cfg['port']), timeout=TIMEOUT_S)
    return ctx.wrap_socket(raw, server_hostname=cfg.get('server_hostname'))


def uri_sans(cert):
    return [v for (k, v) in (cert or {}).get('subjectAltName', ()) if k == 'URI']


class Connection:
    def __init__(self, sock):
        self.sock = sock
        # Validation off so that tests can send requests a strict client would refuse to build.
        config = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.initiate_connection()
        self.flush()
        self.pending = []  # events read but not yet consumed
        self.terminated = None

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def next_event(self):
        while not self.pending:
            if self.terminated is not None:
                raise ConnectionError('connection terminated: %s' % self.terminated)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError('connection closed by peer')
            self.pending.extend(self.h2.receive_data(data))
            self.flush()
        return self.pending.pop(0)

    def request(self, req):
        out = {'status': None, 'reset': None, 'echo': '', 'error': None}
        method = req.get('method', 'CONNECT')
        headers = [(':method', method)]
        if req.get('authority') is not None:
            headers.append((':authority', req['authority']))
        if method != 'CONNECT':
            headers += [(':scheme', 'https'), (':path', '/')]
        headers += [tuple(h) for h in req.get('headers', [])]
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, headers, end_stream=False)
        self.flush()
        echo = b''
        try:
            while True:
                event = self.next_event()
                if isinstance(event, h2.events.ConnectionTerminated):
                    self.terminated = event.error_code
                    raise ConnectionError('GOAWAY %s' % event.error_code)
                if getattr(event, 'stream_id', stream_id) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    out['status'] = int(dict(event.headers)[b':status'])
                    if out['status'] == 200 and not event.stream_ended:
                        self.h2.send_data(stream_id, req.get('payload', '').encode(), end_stream=True)
                        self.flush()
                elif isinstance(event, h2.events.DataReceived):
                    echo += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    self.flush()
                elif isinstance(event, h2.events.StreamReset):
                    out['reset'] = getattr(event.error_code, 'name', event.error_code)
                    break
                elif isinstance(event, h2.events.StreamEnded):
                    if out['status'] != 200:  # refused: drop our half of the stream, as a client should
                        self.h2.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
                        self.flush()
                    break
        except (ConnectionError, OSError) as err:
            out['error'] = str(err)
        out['echo'] = echo.decode('utf-8', errors='replace')
        return out


def main():
    cfg = json.loads(sys.argv[1])
    requests = cfg.get('requests') or [cfg]
    try:
        sock = tls_connect(cfg)
    except (OSError, ssl.SSLError) as err:
        for _ in requests:
            print(json.dumps({'status': None, 'reset': None, 'echo': '', 'peer_san': [], 'alpn': None,
                              'error': 'tls: %s' % err}), flush=True)
        return
    peer = {'peer_san': uri_sans(sock.getpeercert()), 'alpn': sock.selected_alpn_protocol()}
    conn = Connection(sock)
    for req in requests:
        print(json.dumps({**conn.request(req), **peer}), flush=True)
    try:
        conn.h2.close_connection()
        conn.flush()
    except Exception:  # noqa: BLE001 -- the connection may already be gone; closing is best effort
        pass
    sock.close()


if __name__ == '__main__':
    main()
