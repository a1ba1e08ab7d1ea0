#!/usr/bin/env bash
# README's first command: the paper's main job (ACSAC 2016, §3-4) on one machine, embedded defaults.
#   prelude: a software TPM (swtpm) with an EK certificate; its EK chain, an AK, a quote verified.
#   1. two nodes, A and B, each a swtpm behind tpm2-abrmd (so that the node's "kernel" can extend
#      PCRs while its agent holds the TPM); node A's kernel has measured three programs (IMA).
#   2. registrar, verifier (event-driven hints, a revocation webhook, the software CA) and both
#      agents start; the agents enroll their TPMs with the registrar.
#   3. the tenant makes a runtime policy from node A's IMA log, pins PCRs read from verified
#      quotes, and adds both agents with a payload (a secret, autorun.sh, a revocation action)
#      and their node certificates from the software CA (`vouch agent add --cert`);
#   4. the payloads are decrypted into the agents' tmpfs secure mounts, autorun.sh runs, the
#      verifier keeps attesting (Get Quote / PASS); an allowed program runs on A and still passes;
#   5. an unknown program runs on A: IMA measures it, A's agent hints, the verifier's quote
#      fails on the runtime policy (Invalid Quote), and the revocation goes out: the webhook gets
#      the notice, A's certificate is in the CRL, B verifies the signed notice and runs its action;
#   6. PCR 15 of B is extended behind its agent's back: B's next quote fails (Invalid Quote);
#   7. a timeline with the bootstrap, detection and revocation latencies.
# Everything runs on 127.0.0.1, on ports chosen free at run time, in a temporary directory that is
# removed on exit (daemons stopped, the tmpfs unmounted), also on failure or Ctrl-C.
# Env: VOUCH_DEMO_QUOTE_INTERVAL (verifier quote interval in s, default 2),
#      VOUCH_DEMO_TIMEOUT (s to wait for each daemon / state, default 30).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

# shellcheck source=ci/lib.sh
. ci/lib.sh
lib_init demo
echo "[demo] building vouch (first build takes a few minutes)…" >&2
vouch_build debug
vouch=$bin/vouch

# Errors print as one chain of causes, without a backtrace (panics still get one with RUST_BACKTRACE).
export RUST_LIB_BACKTRACE=0
quote_interval=${VOUCH_DEMO_QUOTE_INTERVAL:-2}
timeout=${VOUCH_DEMO_TIMEOUT:-30}
repo=$(pwd)

# ---------------------------------------------------------------------------------------------
t0=$(now_ms)
timeline=()
mark() { timeline+=("$(printf '%7d ms  %s' "$(( $1 - t0 ))" "$2")"); } # ABS_MS TEXT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
json_get() { # JSON on stdin, a Python expression over `d`
  python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"
}
shorten() { sed -E 's/([0-9a-f]{12})[0-9a-f]{28,}/\1…/g'; } # long hex digests → 12 hex…
http_get() { curl -sf --max-time 5 "$1"; }
field() { # UUID FIELD: one field of `vouch agent status`
  "$vouch" agent status --uuid "$1" | json_get "list(d.values())[0][\"$2\"]"
}
show_status() { # UUID KEY...: those fields of `vouch agent status`, in that order
  local uuid=$1; shift
  "$vouch" agent status --uuid "$uuid" >"$work/status.json"
  python3 -c 'import json, sys
st = list(json.load(open(sys.argv[1])).values())[0]
for k in sys.argv[2:]:
    print(f"  {k}: {st.get(k)}")' "$work/status.json" "$@" | shorten
}
state_of() { # UUID: operational_state from `vouch agent status` (pretty JSON; sed, not a Python
  # start-up per look, since this is polled)
  local out
  out=$("$vouch" agent status --uuid "$1") || return 1
  sed -n 's/^ *"operational_state": *"\([^"]*\)".*/\1/p' <<<"$out" | head -n 1
}
wait_state() { # UUID STATE: poll `vouch agent status` (every 20 ms) until operational_state is STATE
  local uuid=$1 want=$2 state deadline=$(( $(now_ms) + timeout * 1000 ))
  while :; do
    state=$(state_of "$uuid") || fail "vouch agent status --uuid $uuid failed"
    [ "$state" = "$want" ] && return 0
    case $state in Failed | "Invalid Quote" | "Tenant Quote Failed" | Terminated)
      show_status "$uuid" operational_state last_event_id failure_reason >&2
      fail "agent $uuid is $state, not $want" ;;
    esac
    [ "$(now_ms)" -lt "$deadline" ] || fail "agent $uuid: not $want within ${timeout}s (state: $state)"
    sleep 0.02
  done
}
wait_file() { # FILE WHAT: until FILE is non-empty
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  until [ -s "$1" ]; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "no $2 within ${timeout}s ($1)"
    sleep 0.02
  done
}

# The node's kernel, for IMA: append an ima-ng entry for FILE (as PATH) to the measurement list
# and extend its template hash into PCR 10 of the node's TPM, as the kernel does on exec. The
# sha256 bank gets sha256(template data); the list shows the sha1 template hash, as the kernel's
# ascii_runtime_measurements does.
ima_measure() { # LOG TCTI FILE [PATH]
  local log=$1 tcti=$2 file=$3 path=${4:-$3} line extend
  read -r extend line < <(python3 - "$file" "$path" <<'PY'
import hashlib, struct, sys
data = open(sys.argv[1], "rb").read()
d = b"sha256:\0" + hashlib.sha256(data).digest()
n = sys.argv[2].encode() + b"\0"
td = struct.pack("<I", len(d)) + d + struct.pack("<I", len(n)) + n
print(hashlib.sha256(td).hexdigest(),
      f"10 {hashlib.sha1(td).hexdigest()} ima-ng sha256:{hashlib.sha256(data).hexdigest()} {sys.argv[2]}")
PY
)
  tpm2_pcrextend -T "$tcti" "10:sha256=$extend"
  printf '%s\n' "$line" >>"$log"
}

# =============================================================================================
step "Prelude: a software TPM (swtpm) with an EK certificate from its own CA"
swtpm_up tpm
tcti_a=$VOUCH_TCTI
echo "  TCTI $VOUCH_TCTI; EK CA in $VOUCH_EK_CA_DIR"
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
step "Two nodes: A and B, each a swtpm behind tpm2-abrmd"
swtpm_up tpm-b
tcti_b=$VOUCH_TCTI
# The registrar trusts both swtpms' EK CAs (each swtpm-up.sh made its own).
ek_ca=$work/ek-ca
mkdir -p "$ek_ca"
for f in "$work"/tpm/ek-ca/*; do cp "$f" "$ek_ca/a-$(basename "$f")"; done
for f in "$work"/tpm-b/ek-ca/*; do cp "$f" "$ek_ca/b-$(basename "$f")"; done
export VOUCH_EK_CA_DIR=$ek_ca
tabrmd_up a "$tcti_a"; tcti_a=$tabrmd_tcti
tabrmd_up b "$tcti_b"; tcti_b=$tabrmd_tcti
echo "  node A: $tcti_a"
echo "  node B: $tcti_b"
echo "  (a TPM serves one connection at a time; the access broker lets the agent and the node's"
echo "   kernel share it, as /dev/tpmrm0 does on a real machine)"

ima_log=$work/node-a/ascii_runtime_measurements
mkdir -p "$work/node-a" "$work/programs"
for p in /usr/bin/bash /usr/bin/python3.11 /usr/sbin/sshd /usr/bin/curl; do
  [ -f "$p" ] && cp "$p" "$work/programs/$(basename "$p")"
done
printf '#!/bin/sh\necho "mining on $(hostname)"\n' >"$work/programs/cryptominer"
printf '#!/bin/sh\necho backup\n' >"$work/programs/backup.sh"
for p in bash python3.11 sshd; do
  [ -f "$work/programs/$p" ] && ima_measure "$ima_log" "$tcti_a" "$work/programs/$p" "/usr/bin/$p"
done
echo "  node A's kernel measured $(wc -l <"$ima_log") programs into its IMA log and PCR 10:"
sed 's/^/    /' "$ima_log" | shorten

# =============================================================================================
step "Registrar, verifier and agents on 127.0.0.1 (ports picked now, state under $work)"
ca=$work/ca
"$vouch" ca init --dir "$ca" >/dev/null
echo "  software CA for node certificates: $ca (vouch ca init; CRL in cacrl.pem)"
read -r hook_port hint_port agent_a_port agent_b_port <<<"$(free_ports 4)"
hooks=$work/webhook.jsonl
: >"$hooks"
start_daemon webhook "$work" -- python3 "$repo/ci/webhook-sink.py" "$hook_port" "$hooks"
wait_until webhook "answer" curl -s -o /dev/null "http://127.0.0.1:$hook_port/"
echo "  revocation webhook: http://127.0.0.1:$hook_port/revocation (ci/webhook-sink.py)"
t_daemons=$(now_ms)
# Agent mTLS off: the agents below serve plain HTTP (see enable_insecure_payload there).
vouch_control_plane "$bin" VOUCH_VERIFIER_QUOTE_INTERVAL="$quote_interval" \
  VOUCH_VERIFIER_HINT_LISTEN="127.0.0.1:$hint_port" \
  VOUCH_VERIFIER_WEBHOOK_URL="http://127.0.0.1:$hook_port/revocation" \
  VOUCH_VERIFIER_REVOCATION_CA_DIR="$ca" VOUCH_VERIFIER_ENABLE_AGENT_MTLS=false
t=$(now_ms); mark "$t" "registrar and verifier ready ($(( t - t_daemons )) ms after start)"
export VOUCH_REGISTRAR=127.0.0.1:$v_reg_tls_port VOUCH_VERIFIER=127.0.0.1:$v_ver_port VOUCH_TLS_DIR=$vtls
echo "  registrar  http://127.0.0.1:$v_reg_port (agents), https://127.0.0.1:$v_reg_tls_port (mTLS, tenant)"
echo "  verifier   https://127.0.0.1:$v_ver_port (mTLS), quote_interval ${quote_interval} s, hints on 127.0.0.1:$hint_port"
echo "  mTLS material: $vtls (vouch certs init)"

# enable_insecure_payload: this demo runs the agents without mTLS (no trusted_client_ca), so
# their API is plain HTTP and anyone who can reach it could post their own U, V and payload; an
# agent therefore runs a payload's autorun.sh and revocation actions only when this is set
# (rust-keylime's rule). With trusted_client_ca set an agent serves mTLS and needs no such flag
# (tenant_mtls.rs tests that). Here everything is on 127.0.0.1. For the same reason the verifier
# runs with enable_agent_mtls = false: with it on, it refuses agents that registered no mTLS cert.
start_agent() { # NAME PORT TCTI IMA_LOG: sets uuid_NAME
  local name=$1 port=$2 tcti=$3 ima=$4 uuid
  uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  mkdir -p "$work/agent-$name/no-installed-actions"
  start_daemon "agent-$name" "$work/agent-$name" VOUCH_AGENT_UUID="$uuid" \
    VOUCH_AGENT_LISTEN="127.0.0.1:$port" VOUCH_AGENT_REGISTRAR="127.0.0.1:$v_reg_port" \
    VOUCH_AGENT_TCTI="$tcti" VOUCH_AGENT_STATE_DIR="$work/agent-$name" \
    VOUCH_AGENT_SECURE_MOUNT="$work/agent-$name/secure" VOUCH_AGENT_ENABLE_INSECURE_PAYLOAD=true \
    VOUCH_AGENT_IMA_ML_PATH="$ima" VOUCH_AGENT_VERIFIER_HINT_URL="http://127.0.0.1:$hint_port" \
    VOUCH_AGENT_REVOCATION_ACTIONS_DIR="$work/agent-$name/no-installed-actions" \
    -- "$bin/vouch-agent"
  agent_name=agent-$name
  printf -v "uuid_$name" '%s' "$uuid"
}
t_agent=$(now_ms)
start_agent a "$agent_a_port" "$tcti_a" "$ima_log"
start_agent b "$agent_b_port" "$tcti_b" "$work/node-b-has-no-ima-log"
for n in a b; do
  port_var=agent_${n}_port uuid_var=uuid_$n
  wait_until "agent-$n" "answer on /version" http_get "http://127.0.0.1:${!port_var}/version"
  wait_until "agent-$n" "activated registration" "$vouch" agent regstatus --uuid "${!uuid_var}"
  echo "  agent $n    http://127.0.0.1:${!port_var}, id ${!uuid_var}   log: logs/agent-$n.log"
done
t=$(now_ms); mark "$t" "agents A and B enrolled: EK cert chain, MakeCredential/ActivateCredential ($(( t - t_agent )) ms after start)"

# =============================================================================================
step "The tenant's policies: a runtime policy from A's IMA log, PCRs from verified quotes"
"$vouch" policy runtime create --ima-log "$ima_log" --file "$work/programs/backup.sh" \
  -o runtime-policy.json 2>&1 | sed 's/^/  /'
# --file hashes the file under its own path; the node runs it as /usr/local/bin/backup.sh.
python3 - "$work/programs/backup.sh" <<'PY'
import json, sys
p = json.load(open("runtime-policy.json"))
p["digests"]["/usr/local/bin/backup.sh"] = p["digests"].pop(sys.argv[1])
json.dump(p, open("runtime-policy.json", "w"), indent=1)
PY
echo "  runtime-policy.json allows: $(json_get '", ".join(sorted(d["digests"]))' <runtime-policy.json)"
# The PCR values come from each agent itself (the tenant has no access to the node's TPM): an
# integrity quote over a fresh nonce, checked against the AK the registrar activated (vouch tpm
# checkquote: signature, nonce, PCR digest, AK attributes).
pin_pcrs() { # NAME: prints the tpm_policy pinning PCRs 0-7 and 15 of agent NAME
  local name=$1 port_var=agent_${1}_port uuid_var=uuid_$1 nonce q_attest q_sig q_pcrs
  mkdir -p "$work/quote-$name" && cd "$work/quote-$name"
  "$vouch" agent regstatus --uuid "${!uuid_var}" | json_get 'list(d.values())[0]["aik_tpm"]' | base64 -d >ak.pub
  nonce=$(python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_letters+string.digits) for _ in range(20)))')
  http_get "http://127.0.0.1:${!port_var}/v2.5/quotes/integrity?nonce=$nonce&mask=0x80ff&partial=0" |
    json_get 'd["results"]["quote"]' >quote.txt
  IFS=: read -r q_attest q_sig q_pcrs <quote.txt
  base64 -d <<<"${q_attest#r}" >q.msg
  base64 -d <<<"$q_sig" >q.sig
  base64 -d <<<"$q_pcrs" >q.pcrs
  "$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
    --qualification "$(printf '%s' "$nonce" | xxd -p -c 256)" --pcr-list sha256:0,1,2,3,4,5,6,7,15 >checked.txt ||
    fail "agent $name's quote did not verify against its registered AK"
  echo "  node $(tr a-z A-Z <<<"$name"): $(sed -n '1p' checked.txt)" >&2
  python3 - <<'PY'
import json
pcrs = {}
for line in open("checked.txt"):
    parts = line.split()
    if len(parts) == 3 and parts[1] == ":" and parts[0] in ("0", "1", "2", "3", "4", "5", "6", "7", "15"):
        pcrs[parts[0]] = [parts[2].lower().removeprefix("0x")]
assert len(pcrs) == 9, f"PCRs 0-7 and 15 not all in the verified quote: {pcrs}"
print(json.dumps({**pcrs, "mask": hex(sum(1 << int(i) for i in pcrs))}))
PY
}
policy_a=$(pin_pcrs a) || fail "no PCR policy for node A"
policy_b=$(pin_pcrs b) || fail "no PCR policy for node B"
echo "  --tpm-policy (A) '$(shorten <<<"$policy_a")'"
echo "  (a bare swtpm has nothing measured into PCRs 0-7; PCR 15 is what B's tamper will change)"

# =============================================================================================
step "vouch agent add (A and B): identity quote checked, U + payload to the agent, V to the verifier"
mkdir -p payload
printf 'db-password=%s\n' "$(head -c 12 /dev/urandom | base64)" >payload/secret.txt
cat >payload/autorun.sh <<'SH'
#!/bin/sh
# Runs on the node, in the secure mount, once the bootstrap key K decrypted this payload.
date +%s%3N > autorun.marker
echo "autorun.sh ran as $(id -un) in $(pwd); secret has $(wc -c < secret.txt) bytes" >> autorun.marker
SH
# The revocation action (upstream's action_list format): run by the agent with the verified
# notice's message as a JSON file. This one records which node was revoked, and when.
echo "local_action_record" >payload/action_list
cat >payload/local_action_record <<'SH'
#!/bin/sh
python3 - "$1" > revocation.marker <<'PY'
import json, sys, time
msg = json.load(open(sys.argv[1]))
print(time.time_ns() // 1_000_000, msg.get("agent_id"), msg.get("event_id"))
PY
SH
echo "  payload/: $(ls payload | tr '\n' ' ')+ the node's certificate package (vouch agent add --cert)"
t_add=$(now_ms)
"$vouch" agent add --uuid "$uuid_a" --ip 127.0.0.1 --port "$agent_a_port" --cert "$ca" \
  --include payload --tpm-policy "$policy_a" --runtime-policy runtime-policy.json \
  --verify-timeout "$timeout" 2>&1 | shorten | sed 's/^/  A: /' || fail "vouch agent add (A) failed"
t_added=$(now_ms)
"$vouch" agent add --uuid "$uuid_b" --ip 127.0.0.1 --port "$agent_b_port" --cert "$ca" \
  --include payload --tpm-policy "$policy_b" --verify-timeout "$timeout" 2>&1 |
  shorten | sed 's/^/  B: /' || fail "vouch agent add (B) failed"

# =============================================================================================
step "On the nodes: the payload in each agent's secure mount, autorun.sh's marker"
for n in a b; do
  secure=$work/agent-$n/secure
  unz=$secure/unzipped
  wait_file "$unz/autorun.marker" "autorun.sh marker on node $n"
  until [ "$(wc -l <"$unz/autorun.marker")" -ge 2 ]; do sleep 0.02; done
  if [ "$(id -u)" -eq 0 ]; then
    [ "$(findmnt -n -o FSTYPE --mountpoint "$secure")" = tmpfs ] ||
      fail "running as root, but node $n's secure mount $secure is not a tmpfs"
    echo "  node $(tr a-z A-Z <<<"$n"): findmnt: $(findmnt -n -o TARGET,FSTYPE,OPTIONS --mountpoint "$secure")"
  else
    echo "  (not root: the agent used a plain 0700 directory instead of a tmpfs; see logs/agent-$n.log)"
  fi
  cmp -s payload/secret.txt "$unz/secret.txt" || fail "node $n's decrypted secret differs from the tenant's"
  echo "    files: $(cd "$unz" && ls | tr '\n' ' ')"
  echo "    autorun.marker: $(sed -n 2p "$unz/autorun.marker")"
done
t_payload=$(mtime_ms "$work/agent-a/secure/unzipped/decrypted_payload")
t_autorun=$(head -1 "$work/agent-a/secure/unzipped/autorun.marker")
cert_a=$work/agent-a/secure/unzipped/$uuid_a-cert.crt
cert_b=$work/agent-b/secure/unzipped/$uuid_b-cert.crt
for c in "$cert_a" "$cert_b"; do
  openssl verify -crl_check -CAfile "$ca/cacert.crt" -CRLfile "$ca/cacrl.pem" "$c" >/dev/null ||
    fail "node certificate $c does not verify against the CA and its CRL"
done
echo "  both node certificates verify against the CA and its current CRL (openssl verify -crl_check)"

step "vouch agent status: the verifier keeps quoting both nodes"
wait_state "$uuid_a" "Get Quote"
wait_state "$uuid_b" "Get Quote"
show_status "$uuid_a" operational_state attestation_status attestation_count has_runtime_policy tpm_policy
show_status "$uuid_b" operational_state attestation_status attestation_count

# =============================================================================================
step "Node A runs an allowed program: measured, quoted, still PASS"
count=$(field "$uuid_a" attestation_count)
ima_measure "$ima_log" "$tcti_a" "$work/programs/backup.sh" /usr/local/bin/backup.sh
echo "  kernel: $(tail -1 "$ima_log" | shorten)"
deadline=$(( $(now_ms) + timeout * 1000 ))
until [ "$(field "$uuid_a" attestation_count)" -gt "$count" ]; do
  [ "$(now_ms)" -lt "$deadline" ] || fail "no new quote of A within ${timeout}s"
  sleep 0.02
done
wait_state "$uuid_a" "Get Quote"
show_status "$uuid_a" operational_state attestation_status attestation_count

# =============================================================================================
step "IMA violation: an unknown program runs on node A"
ima_measure "$ima_log" "$tcti_a" "$work/programs/cryptominer" /tmp/.x/cryptominer
t_ima=$(now_ms) # the measurement is complete: PCR 10 extended, the entry in the log
echo "  kernel: $(tail -1 "$ima_log" | shorten)   (at +$(( t_ima - t0 )) ms)"
wait_state "$uuid_a" "Invalid Quote"
t_ima_detected=$(now_ms)
show_status "$uuid_a" operational_state attestation_status last_event_id failure_reason
grep -q cryptominer "$work/status.json" || fail "the failure reason does not name the program"

step "Revocation delivered: webhook, CRL, node B's action"
wait_file "$hooks" "webhook notice"
t_hook=$(head -1 "$hooks" | json_get 'd["received_ms"]')
head -1 "$hooks" | python3 -c '
import json, sys
d = json.loads(sys.stdin.readline())
path, b = d["path"], d["body"]
msg = json.loads(b["msg"]) if isinstance(b, dict) and "msg" in b else b
signed = "signed" if isinstance(b, dict) and b.get("signature") else "unsigned"
fields = " ".join(f"{k}={msg.get(k)}" for k in ("type", "agent_id", "event_id"))
print(f"  webhook got POST {path}: {fields} ({signed})")
' || fail "the webhook notice is not readable"
serial_a=$(openssl x509 -in "$cert_a" -noout -serial | cut -d= -f2)
deadline=$(( $(now_ms) + timeout * 1000 ))
until openssl crl -in "$ca/cacrl.pem" -noout -text | grep -qi "Serial Number: *$serial_a"; do
  [ "$(now_ms)" -lt "$deadline" ] || fail "A's serial $serial_a is not in the CRL within ${timeout}s"
  sleep 0.02
done
t_crl=$(mtime_ms "$ca/cacrl.pem")
echo "  CRL ($ca/cacrl.pem): $(openssl crl -in "$ca/cacrl.pem" -noout -text | grep -c 'Serial Number') revoked; A's serial $serial_a is listed"
if openssl verify -crl_check -CAfile "$ca/cacert.crt" -CRLfile "$ca/cacrl.pem" "$cert_a" >/dev/null 2>&1; then
  fail "A's certificate still verifies against the CRL"
fi
openssl verify -crl_check -CAfile "$ca/cacert.crt" -CRLfile "$ca/cacrl.pem" "$cert_b" >/dev/null ||
  fail "B's certificate no longer verifies"
echo "  openssl verify -crl_check: A's certificate refused (revoked), B's still good"
marker_b=$work/agent-b/revocation.marker
wait_file "$marker_b" "revocation action on node B"
read -r t_action revoked_id revoked_event <"$marker_b"
[ "$revoked_id" = "$uuid_a" ] || fail "B's action ran for $revoked_id, not A ($uuid_a)"
echo "  node B verified the signed notice and ran local_action_record: revoked $revoked_id ($revoked_event)"
[ ! -s "$work/agent-a/revocation.marker" ] || fail "node A ran a revocation action for itself"
wait_state "$uuid_b" "Get Quote"
echo "  node B keeps attesting: $(field "$uuid_b" operational_state) / $(field "$uuid_b" attestation_status)"

# =============================================================================================
step "Tamper: PCR 15 of node B is extended behind its agent's back"
tpm2_pcrextend -T "$tcti_b" "15:sha256=$(printf 'tampered' | sha256sum | cut -d' ' -f1)"
t_tamper=$(now_ms) # the extend is done (tpm2_pcrextend's start-up and D-Bus connection come before)
echo "  tpm2_pcrextend 15:sha256=sha256('tampered')   (at +$(( t_tamper - t0 )) ms)"
wait_state "$uuid_b" "Invalid Quote"
t_detected=$(now_ms)
show_status "$uuid_b" operational_state attestation_status last_event_id failure_reason
grep -q 'PCR 15' "$work/status.json" || fail "the failure reason does not name PCR 15"

# =============================================================================================
mark "$t_add" "vouch agent add (A) started"
mark "$t_payload" "A's payload decrypted into its tmpfs   (bootstrap latency $(( t_payload - t_add )) ms, including A's certificate issued by the software CA)"
mark "$t_autorun" "A's autorun.sh ran                    ($(( t_autorun - t_add )) ms after add)"
mark "$t_added" "vouch agent add (A) returned, key check passed ($(( t_added - t_add )) ms)"
mark "$t_ima" "node A's kernel measured an unknown program (PCR 10 extended, entry in the log)"
mark "$t_hook" "webhook received the revocation notice ($(( t_hook - t_ima )) ms after the measurement)"
mark "$t_crl" "CRL re-issued with A's certificate ($(( t_crl - t_ima )) ms after)"
mark "$t_action" "node B's revocation action ran ($(( t_action - t_ima )) ms after)"
mark "$t_ima_detected" "Invalid Quote (A) seen by vouch agent status ($(( t_ima_detected - t_ima )) ms after; status polled every 20 ms)"
mark "$t_tamper" "PCR 15 of node B extended"
mark "$t_detected" "Invalid Quote (B) seen by vouch agent status (detection latency $(( t_detected - t_tamper )) ms; quote_interval ${quote_interval} s)"
printf '\n\033[1m== Timeline (ms since the demo started)\033[0m\n'
printf '%s\n' "${timeline[@]}" | sort -n
printf '\n\033[1;32m[demo] OK\033[0m: the nodes got their secrets only after attesting; an unknown program on A was caught by IMA and A was revoked everywhere (webhook, CRL, node B); B lost its PASS on the first quote after PCR 15 changed.\n'
