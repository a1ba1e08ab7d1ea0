#!/usr/bin/env bash
# IMA verification cost and memory per agent (see crates/core/benches/ima.rs), with upstream
# keylime 7.14.3 timed on the same log in the same run.
#   1. the bench binary writes its fixtures (`--emit DIR`): a 10,001-entry ima-ng log, the runtime
#      policies (plain and with 100 excludes) and the PCR 10 values;
#   2. upstream's verifier code path, keylime.ima.ima.process_measurement_list with an
#      AgentAttestState (what cloud_verifier_common.process_quote_response calls after the quote
#      is verified), is timed on that log from the venv: one-shot (fresh state, all entries) and
#      incremental (a deep copy of the state after the first 9,991 entries, made outside the
#      timing, plus the 10 new entries); every call is checked to succeed;
#   3. upstream's memory for the same things is taken with tracemalloc (after the timing): the
#      AgentAttestState kept per agent, the policy as loaded for a check, the peak of one call;
#   4. the bench binary prints one table with both, and the ratio upstream ÷ Vouch.
# If the venv is missing, the table is printed without the upstream columns.
# Output: one markdown table; a benchmark, never a timed assertion.
# Env: VOUCH_BENCH_MS (time per figure, default 1000), VOUCH_KEYLIME_VENV (default
#      /opt/vouch/keylime-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
./ci/install-deps.sh
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

work=$(mktemp -d /tmp/vouch-bench-ima.XXXXXX)
trap 'rm -rf "$work"' EXIT
venv=${VOUCH_KEYLIME_VENV:-/opt/vouch/keylime-venv}
args=()
if [ -x "$venv/bin/python" ]; then
  cargo bench --quiet -p vouch-core --bench ima -- --emit "$work" >&2
  echo "[bench-ima] timing upstream keylime from $venv on the same log…" >&2
  "$venv/bin/python" - "$work" "${VOUCH_BENCH_MS:-1000}" >"$work/upstream.json" <<'PY'
import copy, importlib.metadata, json, logging, sys, time

d, budget = sys.argv[1], int(sys.argv[2]) / 1000
logging.disable(logging.CRITICAL)  # upstream's config-file warnings; no logging on the success path
from keylime.agentstates import AgentAttestState
from keylime.common.algorithms import Hash
from keylime.ima import ima

fx = json.load(open(f"{d}/fixture.json"))
lines = open(f"{d}/log.txt").read().split("\n")  # as the verifier splits ima_measurement_list
split = fx["split"]
policies = {"": json.load(open(f"{d}/policy.json")), "_excl": json.load(open(f"{d}/policy-excludes.json"))}
banks = {"sha1": Hash.SHA1, "sha256": Hash.SHA256}

def run(state, log, policy, bank, pcr):
    _, failure = ima.process_measurement_list(state, log, policy, pcrval=pcr, hash_alg=banks[bank])
    if failure:
        sys.exit(f"upstream rejected the log ({bank}): {failure.get_event_ids()}")

def measure(make_state, log, policy, bank, pcr):
    """Mean seconds per call over about `budget` (after one warm-up call); states made untimed."""
    run(make_state(), log, policy, bank, pcr)
    total, n = 0.0, 0
    while n < 3 or total < budget:
        states = [make_state() for _ in range(16)]
        for s in states:
            t = time.perf_counter()
            run(s, log, policy, bank, pcr)
            total += time.perf_counter() - t
            n += 1
            if n >= 3 and total >= budget:
                break
    return total / n

out = {"version": importlib.metadata.version("keylime")}
for bank, key in [("sha1", ""), ("sha256", ""), ("sha256", "_excl")]:
    policy = policies[key]
    out[f"oneshot_{bank}{key}"] = measure(
        lambda: AgentAttestState("bench"), lines, policy, bank, fx["pcr10"][bank])
    base = AgentAttestState("bench")
    run(base, lines[:split], policy, bank, fx["pcr10_split"][bank])
    assert base.get_next_ima_ml_entry() == split
    out[f"incr_{bank}{key}"] = measure(
        lambda: copy.deepcopy(base), lines[split:], policy, bank, fx["pcr10"][bank])

# Memory, after the timing (tracemalloc slows Python down): what upstream holds per agent (its
# AgentAttestState after the whole log), the policy as each quote's check holds it
# (json.loads of the stored text), and the peak of one call, all in bytes above the baseline.
import gc, tracemalloc

def traced(fn):
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    kept = fn()
    gc.collect()
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return kept, cur - base, peak - base

for bank in ("sha1", "sha256"):
    def full():
        s = AgentAttestState("bench")
        run(s, lines, policies[""], bank, fx["pcr10"][bank])
        return s
    _, out[f"mem_state_{bank}"], out[f"mem_peak_oneshot_{bank}"] = traced(full)
for key, name in (("", "policy.json"), ("_excl", "policy-excludes.json")):
    text = open(f"{d}/{name}").read()
    _, out[f"mem_policy{key}"], _ = traced(lambda: json.loads(text))
base = AgentAttestState("bench")
run(base, lines[:split], policies[""], "sha256", fx["pcr10_split"]["sha256"])
state = copy.deepcopy(base)
_, _, out["mem_peak_incr_sha256"] = traced(
    lambda: run(state, lines[split:], policies[""], "sha256", fx["pcr10"]["sha256"]))
json.dump(out, sys.stdout)
PY
  args=(--upstream "$work/upstream.json")
else
  echo "[bench-ima] no upstream keylime venv at $venv; table without upstream figures" >&2
fi
cargo bench --quiet -p vouch-core --bench ima -- "${args[@]}"
