#!/usr/bin/env bash
# README's first command: the paper's enrollment and attestation steps on a real (software) TPM.
#   swtpm with an EK certificate → EK + certificate chain → AK → enrollment by MakeCredential /
#   ActivateCredential → quote → verification — then tampered and replayed evidence refused.
# Later issues grow this into the full three-party bootstrap (registrar, verifier, agent).
set -euo pipefail
cd "$(dirname "$0")/.."
./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "[demo] building vouch (first build takes a few minutes)…" >&2
cargo build --quiet -p vouch-cli
vouch="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/vouch"

repo=$(pwd)
work=$(mktemp -d /tmp/vouch-demo.XXXXXX)
cleanup() { kill "$(cat "$work/tpm/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"

now_ms() { date +%s%3N; }
timeline=()
step_start=0
step() { step_start=$(now_ms); printf '\n\033[1m== %s\033[0m\n' "$*"; }
done_step() { local ms=$(( $(now_ms) - step_start )); timeline+=("$(printf '%6d ms  %s' "$ms" "$1")"); }
refused() { # run a command that must fail; show its one-line reason
  if out=$("$@" 2>&1); then echo "UNEXPECTED: accepted: $*" >&2; exit 1; fi
  printf '  refused: %s\n' "$(printf '%s\n' "$out" | grep -m1 '^error:' | sed 's/^error: //')"
}

step "A software TPM (swtpm) with an EK certificate from its own CA"
"$repo/ci/swtpm-up.sh" "$work/tpm" > env
# shellcheck disable=SC1091
. ./env
echo "  TCTI $VOUCH_TCTI; EK CA certificates in $VOUCH_EK_CA_DIR"
done_step "swtpm provisioned (EK, EK certificate, platform certificate) and started"

step "Read the EK and its certificate from the TPM"
"$vouch" tpm ek --public ek.pub --cert ek.der
done_step "vouch tpm ek"

step "Check the EK certificate chain (what the registrar does before trusting an EK)"
"$vouch" tpm verify-ek-cert --cert ek.der --ca-dir "$VOUCH_EK_CA_DIR" --ek-public ek.pub
done_step "vouch tpm verify-ek-cert"

step "Create an attestation key (AK) under the EK"
"$vouch" tpm createak --public ak.pub --private ak.priv --name ak.name
done_step "vouch tpm createak (RSA-2048 AK)"

step "Enrollment: the registrar binds the AK to the EK with MakeCredential (no TPM of its own)"
head -c 32 /dev/urandom > k_e
"$vouch" tpm makecredential --ek-public ek.pub --name ak.name --secret k_e --output cred.out
"$vouch" tpm activatecredential --ak-public ak.pub --ak-private ak.priv --credential cred.out --output k_e.recovered
cmp -s k_e k_e.recovered && echo "  the TPM recovered K_e: it holds both the EK and the AK"
done_step "MakeCredential (software) + ActivateCredential (TPM)"

step "Quote PCRs 0-7 and 16 with a fresh nonce, as the verifier asks"
nonce=$(head -c 20 /dev/urandom | xxd -p -c 40)
"$vouch" tpm quote --ak-public ak.pub --ak-private ak.priv --pcr-list sha256:0,1,2,3,4,5,6,7,16 \
  --qualification "$nonce" --message q.msg --signature q.sig --pcrs q.pcrs
done_step "vouch tpm quote"

step "Verify the quote (signature, nonce, PCR digest, selection, AK attributes)"
"$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
  --qualification "$nonce" --pcr-list sha256:0,1,2,3,4,5,6,7,16 | sed -n '1,2p;/16 :/p'
done_step "vouch tpm checkquote"

step "tpm2-tools agrees: tpm2_checkquote on the same files"
"$vouch" tpm readpublic --public ak.pub --format pem --output ak.pem
tpm2_checkquote -u ak.pem -m q.msg -s q.sig -f q.pcrs -g sha256 -q "$nonce" >/dev/null && echo "  tpm2_checkquote: OK"
done_step "tpm2_checkquote"

step "Tampered and replayed evidence is refused, each for its own reason"
refused "$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
  --qualification "$(head -c 20 /dev/urandom | xxd -p -c 40)"
cp q.pcrs q.tampered; printf '\xff' | dd of=q.tampered bs=1 seek=142 conv=notrunc status=none
refused "$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.tampered \
  --qualification "$nonce"
refused "$vouch" tpm checkquote --public ak.pub --message q.msg --signature q.sig --pcrs q.pcrs \
  --qualification "$nonce" --pcr-list sha256:0,1,16,23
"$vouch" tpm createak --public ak2.pub --private ak2.priv >/dev/null
refused "$vouch" tpm checkquote --public ak2.pub --message q.msg --signature q.sig --pcrs q.pcrs \
  --qualification "$nonce"
done_step "four forgeries refused"

step "A PCR changes (something new was measured): the next quote shows it"
TPM2TOOLS_TCTI=$VOUCH_TCTI tpm2_pcrextend 16:sha256=$(printf 'malware' | sha256sum | cut -c1-64)
nonce2=$(head -c 20 /dev/urandom | xxd -p -c 40)
"$vouch" tpm quote --ak-public ak.pub --ak-private ak.priv --pcr-list sha256:16 \
  --qualification "$nonce2" --message q2.msg --signature q2.sig --pcrs q2.pcrs >/dev/null
"$vouch" tpm checkquote --public ak.pub --message q2.msg --signature q2.sig --pcrs q2.pcrs \
  --qualification "$nonce2" | sed -n '/16 :/p'
echo "  (a verifier holding a policy for PCR 16 marks this node failed; see the tenant-stack issue)"
done_step "re-quote after PCR 16 extend"

printf '\n\033[1m== Timeline\033[0m\n'
printf '%s\n' "${timeline[@]}"
