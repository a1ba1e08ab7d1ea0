#!/usr/bin/env python3
"""Detection-latency probe for the benches: wait, tamper, watch — on one kept-alive connection.

    detect-probe.py TLS_DIR PORT PATH TIMEOUT DETECT_TIMEOUT -- TAMPER_COMMAND...

1. GET https://127.0.0.1:PORT/PATH (a verifier's agent status; mTLS with TLS_DIR's cacert.crt,
   client-cert.crt, client-private.pem) until the agent is in Get Quote (3) and its
   attestation_count has grown once: the tamper then lands at the worst phase of the poll cycle;
2. run TAMPER_COMMAND (e.g. `tpm2_pcrextend -T <tabrmd TCTI> 15:sha256=…`), which must succeed;
3. GET every 2 ms until Invalid Quote (9) or Failed (7).
Prints one line: "<tamper µs> <ioctl end µs> <seen µs> <state>", or "<tamper µs> <ioctl end µs>
stuck <state>" when nothing failed within DETECT_TIMEOUT s. Exits non-zero (with the reason) if
the agent failed before the tamper or never reached Get Quote within TIMEOUT s.

One client on one connection keeps the cost of a look to a request on an open TLS session: curl
in a shell loop (a process, a handshake and a few greps per look) took ~100 ms per look on two
busy cores, which bounded the figure it measured.
"""
import http.client
import json
import ssl
import subprocess
import sys
import time

if len(sys.argv) < 8 or sys.argv[6] != "--":
    sys.exit("usage: detect-probe.py TLS_DIR PORT PATH TIMEOUT DETECT_TIMEOUT -- TAMPER_COMMAND...")
tls, port, path, timeout, detect = sys.argv[1:6]
tamper = sys.argv[7:]
ctx = ssl.create_default_context(cafile=f"{tls}/cacert.crt")
ctx.load_cert_chain(f"{tls}/client-cert.crt", f"{tls}/client-private.pem")
conn = None


def look():
    """(operational_state, attestation_count), reconnecting once on an error."""
    global conn
    for _ in range(2):
        try:
            if conn is None:
                conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=5)
            conn.request("GET", path)
            res = json.loads(conn.getresponse().read()).get("results") or {}
            if "operational_state" not in res and len(res) == 1:
                res = next(iter(res.values()))
            return res.get("operational_state"), res.get("attestation_count")
        except (http.client.HTTPException, OSError, ValueError):
            if conn is not None:
                conn.close()
            conn = None
    return None, None


def now_us():
    return time.time_ns() // 1000


deadline, c0 = time.monotonic() + float(timeout), None
while True:
    st, cnt = look()
    if st == 3 and cnt:
        if c0 is None:
            c0 = cnt
        elif cnt > c0:
            break
    if st in (7, 9):
        sys.exit(f"agent failed before the tamper (state {st})")
    if time.monotonic() > deadline:
        sys.exit(f"no attestation in Get Quote within {timeout}s (state {st})")
    time.sleep(0.005)
t_tamper = now_us()
subprocess.run(tamper, check=True)
t_ioctl = now_us()
deadline = time.monotonic() + float(detect)
while True:
    st, _ = look()
    if st in (7, 9):
        print(t_tamper, t_ioctl, now_us(), st)
        break
    if time.monotonic() > deadline:
        print(t_tamper, t_ioctl, "stuck", st)
        break
    time.sleep(0.002)
