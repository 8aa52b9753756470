"""Traffic for the shared-address NAPT tests (test/lab_napt.test.ts), run inside the lab's
namespaces. Servers print "ready" once listening; clients print one JSON line. Every loop is
bounded in count and time.

  napt_probe.py udp-echo-server ADDR PORT
  napt_probe.py tcp-server ADDR PORT          # EOF from the client: answer "ok" and close; else hold
  napt_probe.py udp-big ADDR PORT SIZE COUNT  # COUNT datagrams of SIZE bytes, each echoed back
  napt_probe.py tcp-short ADDR PORT COUNT     # COUNT sequential connections, closed with FIN
  napt_probe.py tcp-fill ADDR PORT MAX        # connections held open until one fails
  napt_probe.py udp-fill ADDR PORT MAX        # connected UDP sockets until one fails
"""

import errno
import json
import resource
import selectors
import socket
import sys
import time

resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
DEADLINE = time.monotonic() + 100


def udp_echo_server(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        s.sendto(data, peer)


def tcp_server(addr, port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(4096)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except (BlockingIOError, ConnectionError):
                data = None
            if data == b"" or data is None:
                sel.unregister(conn)
                try:
                    if data == b"":
                        conn.sendall(b"ok")
                except OSError:
                    pass
                conn.close()


def udp_big(addr, port, size, count):
    ok = 0
    errors = {}
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        s.connect((addr, port))
        payload = bytes((i + j * 7) & 255 for j in range(size))
        for _attempt in range(3):
            try:
                s.send(payload)
                if s.recv(65535) == payload:
                    ok += 1
                break
            except OSError as e:
                name = "timeout" if isinstance(e, socket.timeout) else errno.errorcode.get(e.errno, str(e))
                errors[name] = errors.get(name, 0) + 1
        s.close()
    print(json.dumps({"sent": count, "ok": ok, "errors": errors}), flush=True)


def tcp_short(addr, port, count):
    ok = 0
    errors = {}
    for _ in range(count):
        if time.monotonic() > DEADLINE:
            errors["deadline"] = errors.get("deadline", 0) + 1
            break
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((addr, port))
            s.sendall(b"x")
            s.shutdown(socket.SHUT_WR)  # the host closes first
            answer = b""
            while True:
                chunk = s.recv(64)
                if not chunk:
                    break
                answer += chunk
            if answer == b"ok":
                ok += 1
            else:
                errors["answer"] = errors.get("answer", 0) + 1
        except OSError as e:
            name = "timeout" if isinstance(e, socket.timeout) else errno.errorcode.get(e.errno, str(e))
            errors[name] = errors.get(name, 0) + 1
        finally:
            s.close()
    print(json.dumps({"ok": ok, "errors": errors}), flush=True)


def fail_name(e):
    return "timeout" if isinstance(e, socket.timeout) else errno.errorcode.get(e.errno, str(e))


def tcp_fill(addr, port, most):
    held = []
    error = None
    started = time.monotonic()
    for _ in range(most):
        s = socket.socket()
        s.settimeout(10)
        try:
            s.connect((addr, port))
            held.append(s)
        except OSError as e:
            error = fail_name(e)
            s.close()
            break
    seconds = time.monotonic() - started
    print(json.dumps({"opened": len(held), "error": error, "seconds": round(seconds, 2)}), flush=True)
    for s in held:
        s.close()


def udp_fill(addr, port, most):
    held = []
    error = None
    for i in range(most):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.connect((addr, port))
        try:
            s.send(b"%d" % i)
            s.recv(64)
            held.append(s)
        except OSError as e:
            error = fail_name(e)
            s.close()
            break
    print(json.dumps({"opened": len(held), "error": error}), flush=True)
    for s in held:
        s.close()


def main():
    cmd, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rest = [int(x) for x in sys.argv[4:]]
    {
        "udp-echo-server": lambda: udp_echo_server(addr, port),
        "tcp-server": lambda: tcp_server(addr, port),
        "udp-big": lambda: udp_big(addr, port, rest[0], rest[1]),
        "tcp-short": lambda: tcp_short(addr, port, rest[0]),
        "tcp-fill": lambda: tcp_fill(addr, port, rest[0]),
        "udp-fill": lambda: udp_fill(addr, port, rest[0]),
    }[cmd]()


main()
