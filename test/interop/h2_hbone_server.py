"""An independent HBONE server (Python ssl + h2) for interop tests.

Usage: h2_hbone_server.py '<json>' with cert (chain PEM file, leaf first), key, ca (roots PEM file),
and optional status (default 200).
Listens on 127.0.0.1 port 0 and prints {"port": N} first. Then, for each stream once it is over, prints
  {"connection": n, "stream": id, "method", "authority", "baggage", "forwarded", "traceparent",
   "peer_san": [client cert URI SANs], "sni_seen": bool, "sni": server_name or null,
   "alpn", "status", "received": bytes as utf8, "reset": error code or null}
A CONNECT is answered with `status`; on 200 its DATA is echoed and the stream ended when the client ends.
Runs until stdin closes or the process is killed.
"""
import json
import os
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.events
import h2.exceptions

RECORDED = ('baggage', 'forwarded', 'traceparent')
print_lock = threading.Lock()
sni_by_socket = {}  # id(SSLSocket) -> server_name from the ClientHello (None: no SNI)


def emit(obj):
    with print_lock:
        print(json.dumps(obj), flush=True)


def log(msg):
    with print_lock:
        print(msg, file=sys.stderr, flush=True)


def on_sni(ssl_sock, server_name, _ctx):
    # OpenSSL runs this for every ClientHello; server_name is None when the client sent no SNI.
    sni_by_socket[id(ssl_sock)] = server_name


def server_context(cfg):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_alpn_protocols(['h2'])
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cfg['cert'], cfg['key'])
    ctx.load_verify_locations(cfg['ca'])
    ctx.sni_callback = on_sni
    return ctx


def serve_connection(number, raw, ctx, status):
    try:
        sock = ctx.wrap_socket(raw, server_side=True)
    except (OSError, ssl.SSLError) as err:
        log('connection %d: TLS handshake failed: %s' % (number, err))
        raw.close()
        return
    sni_seen = id(sock) in sni_by_socket
    common = {
        'connection': number,
        'peer_san': [v for (k, v) in sock.getpeercert().get('subjectAltName', ()) if k == 'URI'],
        'sni_seen': sni_seen,
        'sni': sni_by_socket.pop(id(sock), None),
        'alpn': sock.selected_alpn_protocol(),
    }
    # h2 4.1 insists on :path even for a plain CONNECT (RFC 9113 §8.5 forbids it), so inbound
    # validation is off; the records let the test check the headers instead.
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=False, validate_inbound_headers=False))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    streams = {}  # stream id -> record being built

    def finish(stream_id):
        emit({**common, **streams.pop(stream_id)})

    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                sid = getattr(event, 'stream_id', None)
                if isinstance(event, h2.events.RequestReceived):
                    headers = {k.decode(): v.decode() for (k, v) in event.headers}
                    record = {'stream': sid, 'method': headers.get(':method'), 'authority': headers.get(':authority'),
                              'status': status, 'received': '', 'reset': None}
                    record.update({name: headers.get(name) for name in RECORDED})
                    streams[sid] = record
                    conn.send_headers(sid, [(':status', str(status))], end_stream=status != 200)
                    if status != 200:
                        finish(sid)
                elif isinstance(event, h2.events.DataReceived):
                    conn.acknowledge_received_data(event.flow_controlled_length, sid)
                    if sid in streams:
                        streams[sid]['received'] += event.data.decode('utf-8', errors='replace')
                        conn.send_data(sid, event.data)  # echo (payloads here fit the flow-control windows)
                elif isinstance(event, h2.events.StreamEnded) and sid in streams:
                    conn.end_stream(sid)
                    finish(sid)
                elif isinstance(event, h2.events.StreamReset) and sid in streams:
                    streams[sid]['reset'] = getattr(event.error_code, 'name', event.error_code)
                    finish(sid)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    break
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    except (OSError, ssl.SSLError, h2.exceptions.ProtocolError) as err:
        log('connection %d: %s' % (number, err))
    finally:
        for sid in list(streams):
            finish(sid)
        sock.close()


def main():
    cfg = json.loads(sys.argv[1])
    ctx = server_context(cfg)
    listener = socket.create_server(('127.0.0.1', 0))
    emit({'port': listener.getsockname()[1]})
    # The test owns this process: when it closes our stdin, we exit.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    number = 0
    while True:
        raw, _ = listener.accept()
        number += 1
        threading.Thread(target=serve_connection, args=(number, raw, ctx, cfg.get('status', 200)), daemon=True).start()


if __name__ == '__main__':
    main()
