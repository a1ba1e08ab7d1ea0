"""Check a quote a Vouch agent produced with upstream keylime's own code.

Usage: python3 upstream_check_quote.py  (reads one JSON object on stdin)
  {"agent_id", "nonce", "quote", "pubkey", "aik_tpm", "hash_alg", "tpm_policy"?}

Runs keylime 7.14.3 `tpm/tpm_main.py:Tpm.check_quote` exactly as the tenant does
(`tenant.py:Tenant.validate_tpm_quote`: fresh AgentAttestState, data = the pubkey PEM as
received, so the PCR 16 / NK binding is checked too). Prints a JSON result; exit 0 only if
the quote passes, 1 if upstream rejects it, 2 on a usage error.
"""
import json
import sys

from keylime.agentstates import AgentAttestState
from keylime.common.algorithms import Hash
from keylime.mba import mba
from keylime.tpm.tpm_main import Tpm


def main() -> int:
    req = json.load(sys.stdin)
    # As the tenant does (tenant.py:Tenant.__init__), or check_pcrs has no bootlog parser.
    mba.load_imports(skip_custom_policies=True)
    failure = Tpm().check_quote(
        AgentAttestState(req["agent_id"]),
        req["nonce"],
        req["pubkey"],
        req["quote"],
        req["aik_tpm"],
        tpm_policy=req.get("tpm_policy") or {},
        hash_alg=Hash(req["hash_alg"]),
    )
    events = [{"event_id": e.event_id, "context": str(e.context)} for e in failure.events]
    pcrs = Tpm.get_pcrs_from_quote(req["quote"], False)
    print(json.dumps({"ok": not failure, "events": events, "pcrs": {str(k): v for k, v in pcrs.items()}}))
    return 0 if not failure else 1


if __name__ == "__main__":
    sys.exit(main())
