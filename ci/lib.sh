# Shell functions shared by the CI benches (sourced, never run): a work directory removed on exit,
# daemons in their own process groups, waiting with a deadline, swtpm, the Vouch control plane,
# the verifier's REST API. bash only; the sourcing script runs under `set -Eeuo pipefail`.
#
#   . ci/lib.sh
#   lib_init bench-x        # log prefix; makes $work and $logs, installs the cleanup traps
#   swtpm_up [DIR]          # $tpm_port, $tpm_ctrl, VOUCH_TCTI, VOUCH_EK_CA_DIR (DIR under $work, default tpm)
#   tabrmd_up NAME TCTI     # tpm2-abrmd in front of that TPM: $tabrmd_tcti (shared by many clients)
#   vouch_control_plane "$bin" [VERIFIER_ENV=...]
#
# Globals the functions read: timeout (s, for wait_until), repo (the checkout); they keep
# daemons in `pids` (name -> pid, each the leader of its own process group) and the running
# agent's name in `agent_name` (stopped first on cleanup: it unmounts its secure mount).
# shellcheck shell=bash

declare -A pids=()
agent_name=""
failed_at=""
lib_prefix=ci

now_ms() { date +%s%3N; }
now_us() { date +%s%6N; }
log() { printf '[%s] %s\n' "$lib_prefix" "$*" >&2; }
fail() { failed_at="$*"; exit 1; }

# ---------------------------------------------------------------------------------------------
# Cleanup. Every daemon runs in its own process group (setsid); upstream's daemons ignore
# SIGTERM in their parent and fork workers, so: TERM to the group, a grace period, KILL the group.
stop_group() { # pid [grace in 0.1 s]
  local pid=$1 grace=${2:-30}
  kill -0 "$pid" 2>/dev/null || { kill -KILL -- "-$pid" 2>/dev/null; return 0; }
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq "$grace"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || true
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
stop_daemon() { # NAME: stop it and forget it
  [ -n "${pids[$1]:-}" ] && stop_group "${pids[$1]}"
  unset "pids[$1]"
  [ "$agent_name" != "$1" ] || agent_name=""
}
unmount_all() { # whatever is still mounted under $work (an agent that did not unmount)
  local m
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
}
lib_cleanup() {
  local rc=$?
  set +e
  trap - ERR INT TERM
  if [ "$rc" -ne 0 ]; then
    printf '\n[%s] FAILED%s (exit %d)\n' "$lib_prefix" "${failed_at:+: $failed_at}" "$rc" >&2
    local f
    for f in "$logs"/*.log; do
      [ -s "$f" ] || continue
      printf '\n--- last lines of %s ---\n' "$(basename "$f")" >&2
      tail -n 15 "$f" >&2
    done
  fi
  [ -n "$agent_name" ] && [ -n "${pids[$agent_name]:-}" ] && stop_group "${pids[$agent_name]}"
  unmount_all
  local name
  for name in "${!pids[@]}"; do stop_group "${pids[$name]}"; done
  local tpm_pid
  for tpm_pid in "$work"/tpm*/pid; do [ -f "$tpm_pid" ] && stop_group "$(cat "$tpm_pid")" 10; done
  if findmnt -rn -o TARGET | grep -qF "$work/"; then
    log "something is still mounted under $work; leaving it in place"
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
lib_init() { # PREFIX: $work (a temporary directory) and $logs; cleanup on exit, also on failure
  lib_prefix=$1
  work=$(mktemp -d "/tmp/vouch-$1.XXXXXX")
  logs=$work/logs
  mkdir -p "$logs"
  trap lib_cleanup EXIT
  trap 'failed_at="interrupted"; exit 130' INT
  trap 'failed_at="terminated"; exit 143' TERM
  trap 'failed_at=${failed_at:-"line $LINENO: $BASH_COMMAND"}' ERR
}

# ---------------------------------------------------------------------------------------------
free_ports() { # N distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
# Start a daemon in its own process group, log in $logs/NAME.log, cwd DIR. NAME DIR ENV... -- CMD...
start_daemon() {
  local name=$1 dir=$2; shift 2
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  (cd "$dir" && exec setsid env NO_COLOR=1 "${envs[@]}" "$@" </dev/null >"$logs/$name.log" 2>&1) &
  pids[$name]=$!
}
wait_until() { # NAME WHAT CMD...: poll until CMD succeeds; fail if NAME died or at the timeout
  local name=$1 what=$2; shift 2
  local deadline=$(( $(now_ms) + timeout * 1000 ))
  until "$@" >/dev/null 2>&1; do
    kill -0 "${pids[$name]}" 2>/dev/null || fail "$name exited before $what (its log is below)"
    [ "$(now_ms)" -le "$deadline" ] || fail "$name: no $what within ${timeout}s (its log is below)"
    sleep 0.05
  done
}
# curl with a TLS directory holding cacert.crt, client-cert.crt, client-private.pem. TLS URL [ARGS]
tls_curl() {
  local tls=$1 url=$2; shift 2
  curl -s --max-time 5 --cacert "$tls/cacert.crt" --cert "$tls/client-cert.crt" \
    --key "$tls/client-private.pem" "$@" "$url"
}
http_ok() { [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$1")" = 200 ]; }
tls_ok() { [ "$(tls_curl "$1" "$2" -o /dev/null -w '%{http_code}')" = 200 ]; }
# operational_state and attestation_count from a verifier's GET /agents/ID body, as "STATE COUNT".
state_count() {
  local body st cnt
  body=$(cat)
  st=$(grep -oE '"operational_state": *"?[0-9]+' <<<"$body" | grep -oE '[0-9]+$' | head -1) || true
  cnt=$(grep -oE '"attestation_count": *[0-9]+' <<<"$body" | grep -oE '[0-9]+$' | head -1) || true
  echo "${st:--1} ${cnt:--1}"
}
mtime_ms() { stat -c %.3Y "$1" | tr -d .; }
pcr15() { # TCTI: PCR 15 (sha256 bank), lower-case hex, read through TCTI (e.g. a tpm2-abrmd)
  tpm2_pcrread -T "$1" sha256:15 | awk '$1 == "15:" { print tolower(substr($2, 3)) }'
}
tamper_digest() { # TEXT: the sha256 of TEXT, what the benches extend PCR 15 with
  printf '%s' "$1" | sha256sum | cut -d' ' -f1
}

# ---------------------------------------------------------------------------------------------
swtpm_up() { # [DIR]: swtpm with an EK certificate in $work/DIR (default tpm; DIR must start with
  # "tpm" so that cleanup finds its pid file): exports VOUCH_TCTI, VOUCH_EK_CA_DIR
  local dir=${1:-tpm}
  "$repo/ci/swtpm-up.sh" "$work/$dir" >"$work/$dir.env" || fail "swtpm did not start"
  # shellcheck disable=SC1090
  . "$work/$dir.env"
  tpm_port=${VOUCH_TCTI##*port=}
  tpm_ctrl=$((tpm_port + 1))
}

# A TPM serves one command connection at a time (swtpm, like /dev/tpm0). tpm2-abrmd, the TCG
# access broker, owns that connection and lets several clients share the TPM, as /dev/tpmrm0
# does for the kernel and user space: the agent quotes through it while the demo's "kernel"
# extends PCRs through it. One session D-Bus per $work, one broker per TPM (its own bus name).
dbus_up() {
  [ -n "${pids[dbus]:-}" ] && return 0
  export DBUS_SESSION_BUS_ADDRESS="unix:path=$work/dbus.sock"
  start_daemon dbus "$work" -- dbus-daemon --session --nofork --nopidfile \
    --address="$DBUS_SESSION_BUS_ADDRESS"
  wait_until dbus "its socket" test -S "$work/dbus.sock"
}
tabrmd_up() { # NAME TCTI: sets tabrmd_tcti, the TCTI string for clients of this broker
  local name=$1 tcti=$2
  dbus_up
  start_daemon "tabrmd-$name" "$work" -- tpm2-abrmd --allow-root --session \
    --dbus-name="org.vouch.Tabrmd.$name" --tcti="$tcti"
  tabrmd_tcti="tabrmd:bus_name=org.vouch.Tabrmd.$name,bus_type=session"
  wait_until "tabrmd-$name" "a PCR read through it" tpm2_pcrread -T "$tabrmd_tcti" sha256:0
}

# vouch-registrar and vouch-verifier from BIN, TLS material in $vtls; extra verifier env
# (e.g. VOUCH_VERIFIER_QUOTE_INTERVAL=1) as arguments. The verifier's agent mTLS stays on (its
# default) unless the caller passes VOUCH_VERIFIER_ENABLE_AGENT_MTLS=false, which it must for
# agents serving plain HTTP (the verifier refuses to add those otherwise). Sets vtls,
# v_reg_port, v_reg_tls_port, v_ver_port.
vouch_control_plane() { # BIN [VERIFIER_ENV...]
  local bin=$1; shift
  vtls=$work/vouch/tls
  mkdir -p "$work/vouch"
  "$bin/vouch" certs init --dir "$vtls" >/dev/null
  read -r v_reg_port v_reg_tls_port v_ver_port <<<"$(free_ports 3)"
  start_daemon vouch-registrar "$work/vouch" VOUCH_REGISTRAR_LISTEN="127.0.0.1:$v_reg_port" \
    VOUCH_REGISTRAR_TLS_LISTEN="127.0.0.1:$v_reg_tls_port" VOUCH_REGISTRAR_TLS_DIR="$vtls" \
    VOUCH_REGISTRAR_STATE_DIR="$work/vouch/registrar" VOUCH_REGISTRAR_EK_CA_DIR="$VOUCH_EK_CA_DIR" \
    -- "$bin/vouch-registrar"
  start_daemon vouch-verifier "$work/vouch" VOUCH_VERIFIER_LISTEN="127.0.0.1:$v_ver_port" \
    VOUCH_VERIFIER_TLS_DIR="$vtls" VOUCH_VERIFIER_STATE_DIR="$work/vouch/verifier" "$@" \
    -- "$bin/vouch-verifier"
  wait_until vouch-registrar "answer on /version" http_ok "http://127.0.0.1:$v_reg_port/version"
  wait_until vouch-verifier "answer on /version" tls_ok "$vtls" "https://127.0.0.1:$v_ver_port/version"
}

# Build the Vouch binaries for a cargo profile (debug or release); sets `bin` to their directory.
# (Not a command substitution: a failed build must stop the script under `set -e`.)
vouch_build() { # PROFILE
  local profile=$1 target
  log "building vouch ($profile profile)…"
  cargo build --quiet --profile "$([ "$profile" = debug ] && echo dev || echo "$profile")" \
    -p vouch-registrar -p vouch-verifier -p vouch-agent -p vouch-cli
  target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  bin=$target/$profile
}
