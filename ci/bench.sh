#!/usr/bin/env bash
# Prints the verification cost table (see crates/core/benches/verify.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo bench -p vouch-core --bench verify
