#!/usr/bin/env bash
# README's first command: the paper's main job (ACSAC 2016, §3-4) on one machine, embedded defaults.
#   prelude: a software TPM (swtpm) with an EK certificate; its EK chain, an AK, a quote verified.
#   1. registrar, verifier and agent start; the agent enrolls its TPM with the registrar.
#   2. the tenant adds the agent with a PCR policy and a payload (a secret + autorun.sh);
#   3. the payload is decrypted into the agent's tmpfs secure mount, autorun.sh runs, the verifier
#      keeps attesting (Get Quote / PASS);
#   4. PCR 17 is changed behind the agent's back: the verifier's next quote fails (Invalid Quote);
#   5. a timeline with the bootstrap and detection latencies.
# Everything runs on 127.0.0.1, on ports chosen free at run time, in a temporary directory that is
# removed on exit (daemons stopped, the tmpfs unmounted), also on failure or Ctrl-C.
# Env: VOUCH_DEMO_QUOTE_INTERVAL (verifier quote interval in s, default 1),
#      VOUCH_DEMO_TIMEOUT (s to wait for each daemon / state, default 30).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "[demo] building vouch (first build takes a few minutes)…" >&2
cargo build --quiet -p vouch-registrar -p vouch-verifier -p vouch-agent -p vouch-cli
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug"
vouch=$bin/vouch

# Errors print as one chain of causes, without a backtrace (panics still get one with RUST_BACKTRACE).
export RUST_LIB_BACKTRACE=0
quote_interval=${VOUCH_DEMO_QUOTE_INTERVAL:-1}
timeout=${VOUCH_DEMO_TIMEOUT:-30}
repo=$(pwd)
work=$(mktemp -d /tmp/vouch-demo.XXXXXX)
logs=$work/logs
mkdir -p "$logs"
secure=$work/agent/secure # the agent's secure mount (a tmpfs the agent mounts as root)
declare -A pids=()        # daemon name -> pid

# ---------------------------------------------------------------------------------------------
# Cleanup: stop the agent first (it unmounts the tmpfs it mounted), make sure nothing is left
# mounted, stop the other daemons and swtpm, remove the directory.
stop_pid() { # pid: TERM, up to 5 s, then KILL
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.1
}
show_logs() { # the tail of every daemon log
  local f
  for f in "$logs"/*.log; do
    [ -s "$f" ] || continue
    printf '\n--- last lines of %s ---\n' "$(basename "$f")" >&2
    tail -n 15 "$f" >&2
  done
}
failed_at=""
cleanup() {
  local rc=$?
  set +e
  trap - ERR INT TERM
  if [ "$rc" -ne 0 ]; then
    printf '\n\033[1;31m[demo] FAILED%s (exit %d)\033[0m\n' "${failed_at:+: $failed_at}" "$rc" >&2
    show_logs
  fi
  [ -n "${pids[agent]:-}" ] && stop_pid "${pids[agent]}"
  if findmnt -rn --mountpoint "$secure" >/dev/null 2>&1; then # the agent did not unmount it
    echo "[demo] unmounting the agent's secure mount $secure" >&2
    umount "$secure" 2>/dev/null || umount -l "$secure" 2>/dev/null ||
      echo "[demo] could not unmount $secure" >&2
  fi
  local name
  for name in verifier registrar; do [ -n "${pids[$name]:-}" ] && stop_pid "${pids[$name]}"; done
  [ -f "$work/tpm/pid" ] && stop_pid "$(cat "$work/tpm/pid")"
  if findmnt -rn --mountpoint "$secure" >/dev/null 2>&1; then
    echo "[demo] $secure is still mounted; leaving $work in place" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'failed_at="interrupted"; exit 130' INT
trap 'failed_at="terminated"; exit 143' TERM
trap 'failed_at=${failed_at:-"line $LINENO: $BASH_COMMAND"}' ERR
fail() { failed_at="$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
now_ms() { date +%s%3N; }
t0=$(now_ms)
timeline=()
mark() { timeline+=("$(printf '%7d ms  %s' "$(( $1 - t0 ))" "$2")"); } # ABS_MS TEXT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
free_ports() { # N distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
# GET URL; prints the body, fails on a connection error or an HTTP error. With TLS_DIR set:
# mTLS with its CA and client certificate (how the verifier answers even /version).
http_get() {
  python3 - "$1" "${2:-}" <<'PY'
import ssl, sys, urllib.request
url, tls = sys.argv[1], sys.argv[2]
ctx = None
if tls:
    ctx = ssl.create_default_context(cafile=f"{tls}/cacert.crt")
    ctx.load_cert_chain(f"{tls}/client-cert.crt", f"{tls}/client-private.pem")
with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
    sys.stdout.write(r.read().decode())
PY
}
# Start a daemon in the background with its log in $logs/NAME.log. NAME ENV... -- CMD...
start_daemon() {
  local name=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  env NO_COLOR=1 "${envs[@]}" "$@" >"$logs/$name.log" 2>&1 &
  pids[$name]=$!
}
# Poll until CMD... succeeds; fail if the daemon died or the timeout passed (cleanup shows the logs).
wait_until() { # NAME WHAT CMD...
  local name=$1 what=$2; shift 2
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "${pids[$name]}" 2>/dev/null || fail "vouch-$name exited before $what (its log is below)"
    [ "$(now_ms)" -le "$deadline" ] || fail "vouch-$name: no $what within ${timeout}s (its log is below)"
    sleep 0.05
  done
}
json_get() { # JSON on stdin, a Python expression over `d`
  python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}
shorten() { sed -E 's/([0-9a-f]{12})[0-9a-f]{52}/\1…/g'; } # 64-hex digests → 12 hex…
show_status() { # KEY...: those fields of `vouch agent status` (in status.json), in that order
  python3 -c 'import json, sys
st = list(json.load(open("status.json")).values())[0]
for k in sys.argv[1:]:
    print(f"  {k}: {st.get(k)}")' "$@" | shorten
}

# =============================================================================================
step "Prelude: a software TPM (swtpm) with an EK certificate from its own CA"
"$repo/ci/swtpm-up.sh" "$work/tpm" >"$work/tpm.env" || fail "swtpm did not start"
# shellcheck disable=SC1091
. "$work/tpm.env"
tpm_port=${VOUCH_TCTI##*port=}
tpm_ctrl=$((tpm_port + 1))
echo "  TCTI $VOUCH_TCTI (control channel 127.0.0.1:$tpm_ctrl); EK CA in $VOUCH_EK_CA_DIR"
mkdir -p "$work/prelude" && cd "$work/prelude"
"$vouch" tpm ek --public ek.pub --cert ek.der >/dev/null
"$vouch" tpm verify-ek-cert --cert ek.der --ca-dir "$VOUCH_EK_CA_DIR" --ek-public ek.pub | sed 's/^/  /'
"$vouch" tpm createak --public ak.pub --private ak.priv --name ak.name >/dev/null
nonce=$(head -c 20 /dev/urandom | xxd -p -c 40)
"$vouch" tpm quote --ak-public ak.pub --ak-private ak.priv --pcr-list sha256:0,16,17 \
  --qualification "$nonce" --message q.msg --signature q.sig --pcrs q.pcrs >/dev/null
"$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
  --qualification "$nonce" --pcr-list sha256:0,16,17 | sed -n '1p' | sed 's/^/  /'
cp q.pcrs q.tampered; printf '\xff' | dd of=q.tampered bs=1 seek=142 conv=notrunc status=none
if out=$("$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig \
  --pcrs q.tampered --qualification "$nonce" 2>&1); then
  fail "a quote with an altered PCR value was accepted"
fi
printf '  altered PCR value refused: %s\n' "$(printf '%s\n' "$out" | grep -m1 '^error:' | sed 's/^error: //')"
cd "$work"
mark "$(now_ms)" "swtpm up; EK chain, AK and a quote checked (prelude)"

# =============================================================================================
step "Registrar, verifier and agent on 127.0.0.1 (ports picked now, state under $work)"
read -r reg_port reg_tls_port ver_port agent_port <<<"$(free_ports 4)"
uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
tls=$work/tls
"$vouch" certs init --dir "$tls" >/dev/null
echo "  mTLS material: $tls (vouch certs init: CA, server and client certificates)"
mark "$(now_ms)" "TLS material created (vouch certs init)"
export VOUCH_REGISTRAR=127.0.0.1:$reg_tls_port VOUCH_VERIFIER=127.0.0.1:$ver_port VOUCH_TLS_DIR=$tls

t_daemons=$(now_ms)
start_daemon registrar VOUCH_REGISTRAR_LISTEN="127.0.0.1:$reg_port" \
  VOUCH_REGISTRAR_TLS_LISTEN="127.0.0.1:$reg_tls_port" VOUCH_REGISTRAR_TLS_DIR="$tls" \
  VOUCH_REGISTRAR_STATE_DIR="$work/registrar" VOUCH_REGISTRAR_EK_CA_DIR="$VOUCH_EK_CA_DIR" \
  -- "$bin/vouch-registrar"
start_daemon verifier VOUCH_VERIFIER_LISTEN="127.0.0.1:$ver_port" VOUCH_VERIFIER_TLS_DIR="$tls" \
  VOUCH_VERIFIER_STATE_DIR="$work/verifier" VOUCH_VERIFIER_QUOTE_INTERVAL="$quote_interval" \
  -- "$bin/vouch-verifier"
wait_until registrar "answer on /version" http_get "http://127.0.0.1:$reg_port/version"
t=$(now_ms); mark "$t" "registrar ready ($(( t - t_daemons )) ms after start)"
echo "  registrar  http://127.0.0.1:$reg_port (agents)  https://127.0.0.1:$reg_tls_port (mTLS, tenant)   log: logs/registrar.log"
wait_until verifier "answer on /version" http_get "https://127.0.0.1:$ver_port/version" "$tls"
t=$(now_ms); mark "$t" "verifier ready ($(( t - t_daemons )) ms after start; quote_interval ${quote_interval} s)"
echo "  verifier   https://127.0.0.1:$ver_port (mTLS), quote_interval ${quote_interval} s         log: logs/verifier.log"

# enable_insecure_payload: this demo runs the agent without mTLS (no trusted_client_ca), so
# its API is plain HTTP and anyone who can reach it could post their own U, V and payload; the
# agent therefore runs a payload's autorun.sh only when this is set (rust-keylime's rule). With
# trusted_client_ca set the agent serves mTLS and needs no such flag (tenant_mtls.rs tests that).
# Here everything is on 127.0.0.1.
t_agent=$(now_ms)
start_daemon agent VOUCH_AGENT_UUID="$uuid" VOUCH_AGENT_LISTEN="127.0.0.1:$agent_port" \
  VOUCH_AGENT_REGISTRAR="127.0.0.1:$reg_port" VOUCH_AGENT_TCTI="$VOUCH_TCTI" \
  VOUCH_AGENT_STATE_DIR="$work/agent" VOUCH_AGENT_SECURE_MOUNT="$secure" \
  VOUCH_AGENT_ENABLE_INSECURE_PAYLOAD=true \
  -- "$bin/vouch-agent"
wait_until agent "answer on /version" http_get "http://127.0.0.1:$agent_port/version"
wait_until agent "activated registration" "$vouch" agent regstatus --uuid "$uuid"
t=$(now_ms); mark "$t" "agent enrolled: EK cert chain, MakeCredential/ActivateCredential ($(( t - t_agent )) ms after start)"
echo "  agent      http://127.0.0.1:$agent_port, id $uuid, TPM $VOUCH_TCTI   log: logs/agent.log"
"$vouch" agent regstatus --uuid "$uuid" |
  json_get '"  registrar: " + ", ".join(f"{k}: {v}" for k, v in list(d.values())[0].items() if k in ("operational_state", "ip", "port", "regcount"))'

# =============================================================================================
step "The tenant pins PCRs 0-7 and 17 to their current values, read from a verified quote"
# swtpm serves one TPM connection at a time and the agent holds it, so the values come from the
# agent itself: an integrity quote over a fresh nonce, checked against the AK the registrar
# activated (vouch tpm checkquote: signature, nonce, PCR digest, AK attributes).
cd "$work"
"$vouch" agent regstatus --uuid "$uuid" | json_get 'list(d.values())[0]["aik_tpm"]' | base64 -d >ak.pub
nonce=$(python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_letters+string.digits) for _ in range(20)))')
http_get "http://127.0.0.1:$agent_port/v2.5/quotes/integrity?nonce=$nonce&mask=0x200ff&partial=0" |
  json_get 'd["results"]["quote"]' >quote.txt
IFS=: read -r q_attest q_sig q_pcrs <quote.txt
base64 -d <<<"${q_attest#r}" >q.msg
base64 -d <<<"$q_sig" >q.sig
base64 -d <<<"$q_pcrs" >q.pcrs
"$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
  --qualification "$(printf '%s' "$nonce" | xxd -p -c 256)" --pcr-list sha256:0,1,2,3,4,5,6,7,16,17 >checked.txt ||
  fail "the agent's quote did not verify against its registered AK"
sed -n '1p' checked.txt | sed 's/^/  /'
pcr() { awk -v i="$1" '$1 == i && $2 == ":" { print tolower(substr($3, 3)) }' checked.txt; }
pcr17=$(pcr 17)
[ ${#pcr17} -eq 64 ] || fail "PCR 17 not in the verified quote"
policy=$(python3 - "$(for i in 0 1 2 3 4 5 6 7 17; do printf '%s=%s ' "$i" "$(pcr "$i")"; done)" <<'PY'
import json, sys
pcrs = dict(kv.split("=") for kv in sys.argv[1].split())
mask = sum(1 << int(i) for i in pcrs)
print(json.dumps({**{i: [v] for i, v in pcrs.items()}, "mask": hex(mask)}))
PY
)
boot_pcrs=$(for i in 0 1 2 3 4 5 6 7; do pcr "$i"; done | sort -u)
if [ "$boot_pcrs" = "$(printf '0%.0s' $(seq 64))" ]; then
  echo "  PCRs 0-7 : all 0000000000000000… (nothing measured into a bare swtpm's boot PCRs)"
else
  for i in 0 1 2 3 4 5 6 7; do echo "  PCR $i    : $(pcr "$i" | cut -c1-16)…"; done
fi
echo "  PCR 17   : $(cut -c1-16 <<<"$pcr17")… $( [ "$pcr17" = "$(printf 'f%.0s' $(seq 64))" ] && echo '(all ones: locality-4 DRTM PCRs start at ff…ff until a _TPM_Hash_Start)')"
echo "  --tpm-policy '$(shorten <<<"$policy")'"

# =============================================================================================
step "vouch agent add: identity quote checked, U + payload to the agent, V to the verifier"
mkdir -p payload
printf 'db-password=%s\n' "$(head -c 12 /dev/urandom | base64)" >payload/secret.txt
cat >payload/autorun.sh <<'SH'
#!/bin/sh
# Runs on the node, in the secure mount, once the bootstrap key K decrypted this payload.
date +%s%3N > autorun.marker
echo "autorun.sh ran as $(id -un) in $(pwd); secret has $(wc -c < secret.txt) bytes" >> autorun.marker
SH
echo "  payload/: $(ls payload | tr '\n' ' ')(zipped by the tenant, AES-256-GCM under K)"
t_add=$(now_ms)
"$vouch" agent add --uuid "$uuid" --ip 127.0.0.1 --port "$agent_port" --payload payload \
  --tpm-policy "$policy" --verify-timeout "$timeout" 2>&1 | shorten | sed 's/^/  /' || fail "vouch agent add failed"
t_added=$(now_ms)

# =============================================================================================
step "On the node: the payload in the agent's secure mount, autorun.sh's marker"
unz=$secure/unzipped
deadline=$(( $(now_ms) + timeout * 1000 ))
until [ -s "$unz/autorun.marker" ] && [ "$(wc -l <"$unz/autorun.marker")" -ge 2 ]; do
  [ "$(now_ms)" -lt "$deadline" ] || fail "autorun.sh's marker did not appear in $unz within ${timeout}s"
  sleep 0.05
done
if [ "$(id -u)" -eq 0 ]; then
  mnt=$(findmnt -n -o TARGET,FSTYPE,OPTIONS --mountpoint "$secure") ||
    fail "running as root, but the agent's secure mount $secure is not a mount point"
  [ "$(findmnt -n -o FSTYPE --mountpoint "$secure")" = tmpfs ] || fail "$secure is not a tmpfs: $mnt"
  echo "  findmnt: $mnt"
else
  echo "  (not root: the agent used a plain 0700 directory instead of a tmpfs; see logs/agent.log)"
fi
ls -l "$unz" | tail -n +2 | sed 's/^/  /'
cmp -s payload/secret.txt "$unz/secret.txt" || fail "the decrypted secret differs from the tenant's"
echo "  secret.txt on the node = the tenant's secret.txt: $(cat "$unz/secret.txt" | sed 's/=.*/=…/')"
echo "  autorun.marker: $(sed -n 2p "$unz/autorun.marker")"
t_payload=$(python3 -c 'import os,sys; print(int(os.stat(sys.argv[1]).st_mtime_ns // 1000000))' "$unz/decrypted_payload")
t_autorun=$(head -1 "$unz/autorun.marker")

step "vouch agent status: the verifier keeps quoting the node"
deadline=$(( $(now_ms) + timeout * 1000 ))
until "$vouch" agent status --uuid "$uuid" >status.json 2>&1 &&
  [ "$(json_get 'list(d.values())[0]["operational_state"]' <status.json)" = "Get Quote" ] &&
  [ "$(json_get 'list(d.values())[0]["attestation_status"]' <status.json)" = "PASS" ]; do
  [ "$(now_ms)" -lt "$deadline" ] || { cat status.json >&2; fail "status is not Get Quote / PASS within ${timeout}s"; }
  sleep 0.2
done
show_status operational_state attestation_status attestation_count hash_alg tpm_policy

# =============================================================================================
step "Tamper: PCR 17 changes behind the agent's back"
# swtpm's control channel runs the _TPM_Hash_Start/Data/End sequence (what a DRTM launch does),
# which resets and extends PCR 17 — possible while the agent holds the TPM command connection.
t_tamper=$(now_ms)
swtpm_ioctl --tcp "127.0.0.1:$tpm_ctrl" -h "tampered kernel" || fail "swtpm_ioctl -h failed"
echo "  swtpm_ioctl --tcp 127.0.0.1:$tpm_ctrl -h 'tampered kernel'   (at +$(( t_tamper - t0 )) ms)"
deadline=$(( $(now_ms) + timeout * 1000 ))
while :; do
  "$vouch" agent status --uuid "$uuid" >status.json 2>status.err || { cat status.err >&2; fail "vouch agent status failed"; }
  state=$(json_get 'list(d.values())[0]["operational_state"]' <status.json)
  [ "$state" = "Invalid Quote" ] && break
  case $state in Failed | "Tenant Quote Failed" | Terminated)
    show_status operational_state last_event_id failure_reason >&2
    fail "the verifier stopped attesting for another reason ($state)" ;;
  esac
  kill -0 "${pids[agent]}" 2>/dev/null || fail "vouch-agent exited during the demo"
  [ "$(now_ms)" -lt "$deadline" ] || fail "no Invalid Quote within ${timeout}s of the tamper (state: $state)"
  sleep 0.1
done
t_detected=$(now_ms)
show_status operational_state attestation_status last_event_id failure_reason
grep -q 'PCR 17' status.json || fail "the failure reason does not name PCR 17"

# =============================================================================================
mark "$t_add" "vouch agent add started"
mark "$t_payload" "payload decrypted into the tmpfs     (bootstrap latency $(( t_payload - t_add )) ms)"
mark "$t_autorun" "autorun.sh ran                       ($(( t_autorun - t_add )) ms after add)"
mark "$t_added" "vouch agent add returned, key check passed ($(( t_added - t_add )) ms)"
mark "$t_tamper" "PCR 17 changed (swtpm_ioctl -h)"
mark "$t_detected" "Invalid Quote seen by vouch agent status (detection latency $(( t_detected - t_tamper )) ms; quote_interval ${quote_interval} s, status polled every 0.1 s)"
printf '\n\033[1m== Timeline (ms since the demo started)\033[0m\n'
printf '%s\n' "${timeline[@]}" | sort -n
printf '\n\033[1;32m[demo] OK\033[0m: the node got its secret only after attesting, and lost its PASS on the first quote after PCR 17 changed.\n'
