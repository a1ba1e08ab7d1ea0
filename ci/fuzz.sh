#!/usr/bin/env bash
# Runs every cargo-fuzz target for N executions (default 1,000,000) and prints a table of the
# executions libFuzzer reports. Seeds each corpus from real tpm2-tools output on a swtpm first.
#   ./ci/fuzz.sh [RUNS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}; shift || true
./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)

# --- seed corpora from a real TPM ---------------------------------------------------------
work=$(mktemp -d); trap 'kill $(cat "$work/pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT
./ci/swtpm-up.sh "$work" > "$work/env"
# shellcheck disable=SC1091
. "$work/env"
seed() { mkdir -p "fuzz/corpus/$1"; cp "$2" "fuzz/corpus/$1/$(basename "$2")-$(sha1sum "$2" | cut -c1-8)"; }
(
  cd "$work"
  tpm2_createek -c ek.ctx -G rsa -u ek-rsa.pub >/dev/null
  tpm2_createak -C ek.ctx -c ak.ctx -G rsa -g sha256 -s rsassa -u ak-rsa.pub -n ak-rsa.name >/dev/null
  tpm2_flushcontext -t
  tpm2_quote -c ak.ctx -l sha1:0,1+sha256:0,1,16+sha384:0 -q 0badc0de -m q-rsa.msg -s q-rsa.sig -o q-rsa.pcrs >/dev/null
  tpm2_flushcontext -t
  tpm2_certify -C ak.ctx -c ak.ctx -g sha256 -o certify.msg -s certify.sig >/dev/null 2>&1 || true
  tpm2_flushcontext -t
  head -c 32 /dev/urandom > secret
  tpm2_makecredential -T none -e ek-rsa.pub -s secret -n "$(xxd -p -c 256 ak-rsa.name)" -o cred.out >/dev/null
  tpm2_nvread 0x01c00002 -o ekcert-rsa.der 2>/dev/null || true
  tpm2_nvread 0x01c0000a -o ekcert-ecc.der 2>/dev/null || true
  tpm2_flushcontext -t
  tpm2_createek -c ek2.ctx -G ecc -u ek-ecc.pub >/dev/null
  tpm2_createak -C ek2.ctx -c ak2.ctx -G ecc -g sha256 -s ecdsa -u ak-ecc.pub -n ak-ecc.name >/dev/null
  tpm2_flushcontext -t
  tpm2_quote -c ak2.ctx -l sha256:0,1,2,3,4,5,6,7 -q 00 -m q-ecc.msg -s q-ecc.sig -o q-ecc.pcrs >/dev/null
)
for f in "$work"/*.pub; do seed tpm_public "$f"; done
for f in "$work"/*.msg; do seed tpm_attest "$f"; done
for f in "$work"/*.sig; do seed tpm_signature "$f"; done
for f in "$work"/*.pcrs; do seed tools_pcr_file "$f"; done
for f in "$work"/*.name; do seed tpm_name "$f"; done
seed credential_file "$work/cred.out"
# credential_file also reads its input as an EK public area for MakeCredential.
for f in "$work"/ek-*.pub; do seed credential_file "$f"; done
for f in "$work"/ekcert-*.der; do [ -f "$f" ] && seed ek_cert "$f"; done
for f in "$work"/ek-ca/*.pem; do [ -f "$f" ] && seed ek_cert "$f"; done
# ek_cert signs inputs starting 0xa4 into an EK certificate's subjectAltName: the TCG
# directoryName {tpmManufacturer, tpmModel, tpmVersion} that swtpm writes.
mkdir -p fuzz/corpus/ek_cert
printf '\xa4\x44\x30\x42\x31\x16\x30\x14\x06\x05\x67\x81\x05\x02\x01\x0c\x0bid:00001014\x31\x10\x30\x0e\x06\x05\x67\x81\x05\x02\x02\x0c\x05swtpm\x31\x16\x30\x14\x06\x05\x67\x81\x05\x02\x03\x0c\x0bid:20191023' > fuzz/corpus/ek_cert/tcg-san
mkdir -p fuzz/corpus/pcr_selection
printf 'sha1:0,1+sha256:10,16' > fuzz/corpus/pcr_selection/text1
printf 'sha256:all' > fuzz/corpus/pcr_selection/text2
printf '\x00\x00\x00\x01\x00\x0b\x03\x03\x00\x01' > fuzz/corpus/pcr_selection/bin1
mkdir -p fuzz/corpus/keylime_payload; head -c 64 /dev/urandom > fuzz/corpus/keylime_payload/random64

# --- run -------------------------------------------------------------------------------------
printf '\n%-18s %12s %10s %s\n' target executions seconds result
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  start=$(date +%s)
  if (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- -runs="$RUNS" -max_len=4096 -print_final_stats=1) > "$work/$t.log" 2>&1; then
    res=ok
  else
    res="FAILED (see fuzz/artifacts/$t)"
    # Next to the crash input, inside the git-ignored artifacts directory.
    mkdir -p "fuzz/artifacts/$t"; cp "$work/$t.log" "fuzz/artifacts/$t/failure.log"
  fi
  runs=$(grep -Eo 'Done [0-9]+ runs' "$work/$t.log" | tail -1 | grep -Eo '[0-9]+' || echo "?")
  printf '%-18s %12s %10s %s\n' "$t" "$runs" "$(( $(date +%s) - start ))" "$res"
done
