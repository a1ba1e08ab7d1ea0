#!/usr/bin/env bash
# README's test command: installs what is missing, then runs every check Vouch has.
#   formatting, clippy (-D warnings), unit + property + integration tests (real swtpm,
#   tpm2-tools, upstream keylime from PyPI as a peer), then the demo end to end.
set -euo pipefail
cd "$(dirname "$0")/.."

./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
export VOUCH_KEYLIME_PYTHON=${VOUCH_KEYLIME_PYTHON:-${VOUCH_KEYLIME_VENV:-/opt/vouch/keylime-venv}/bin/python3}

# tpm2-tss prints its own WARNING/ERROR lines for failures the tests provoke on purpose (wrong
# credential, undefined NV index, stopped swtpm); Vouch's errors carry the response codes anyway.
export TSS2_LOG=${TSS2_LOG:-all+none}

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test --workspace"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/vouch-test.log"
status=${PIPESTATUS[0]}
set -e

step "ci/demo.sh (README's run command, end to end; its log: ${TMPDIR:-/tmp}/vouch-demo.log)"
demo_status=0
./ci/demo.sh >"${TMPDIR:-/tmp}/vouch-demo.log" 2>&1 || demo_status=$?
tail -n 20 "${TMPDIR:-/tmp}/vouch-demo.log"
[ "$demo_status" -eq 0 ] || [ "$status" -ne 0 ] || status=$demo_status

read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p + 0, f + 0 }' "${TMPDIR:-/tmp}/vouch-test.log")
printf '\nvouch: %s passed, %s failed; demo %s\n' "${passed:-0}" "${failed:-0}" \
  "$([ "$demo_status" -eq 0 ] && echo OK || echo "FAILED (exit $demo_status)")"
exit "$status"
