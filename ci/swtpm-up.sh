#!/usr/bin/env bash
# Starts a provisioned swtpm (EK certificates from a private CA) in DIR on free ports and prints
# shell lines to source: TPM2TOOLS_TCTI, VOUCH_TCTI, VOUCH_EK_CA_DIR. The pid is in DIR/pid.
#   ./ci/swtpm-up.sh DIR
set -euo pipefail
dir=${1:?usage: swtpm-up.sh DIR}
mkdir -p "$dir/state" "$dir/ca"
cat > "$dir/swtpm-localca.conf" <<CONF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
CONF
cat > "$dir/swtpm-localca.options" <<CONF
--platform-manufacturer Vouch
--platform-version 2.1
--platform-model swtpm
CONF
cat > "$dir/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dir/swtpm-localca.conf
create_certs_tool_options = $dir/swtpm-localca.options
CONF
swtpm_setup --tpm2 --createek --create-ek-cert --create-platform-cert --lock-nvram \
  --pcr-banks sha1,sha256,sha384 --tpmstate "$dir/state" --config "$dir/swtpm_setup.conf" \
  --overwrite > "$dir/setup.log" 2>&1 || { cat "$dir/setup.log" >&2; exit 1; }
# The CA certificates an EK verifier trusts: the root and the intermediate that signs EK certs.
mkdir -p "$dir/ek-ca"
cp "$dir"/ca/*cert*.pem "$dir/ek-ca/" 2>/dev/null || true
for attempt in 1 2 3 4 5; do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  swtpm socket --tpm2 --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 --tpmstate dir="$dir/state" \
    --flags not-need-init,startup-clear > "$dir/swtpm.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
      echo "export TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=$port"
      echo "export VOUCH_TCTI=swtpm:host=127.0.0.1,port=$port"
      echo "export VOUCH_EK_CA_DIR=$dir/ek-ca"
      exit 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
    sleep 0.05
  done
  kill "$(cat "$dir/pid")" 2>/dev/null || true
done
echo "swtpm did not start: $(cat "$dir/swtpm.log")" >&2
exit 1
