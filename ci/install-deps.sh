#!/usr/bin/env bash
# Installs what Vouch's demo and tests need on Debian 12. Idempotent: does nothing that is done.
#   - Debian packages: swtpm, tpm2-tools, the TSS libraries tss-esapi links against, a C toolchain,
#     tpm2-abrmd and D-Bus (the demo shares each swtpm between its agent and the "kernel")
#   - upstream keylime 7.14.3 from PyPI in a venv (the interop peer and benchmark baseline)
# Env: VOUCH_KEYLIME_VENV (default /opt/vouch/keylime-venv).
set -euo pipefail

APT_PACKAGES=(
  swtpm swtpm-tools tpm2-tools tpm2-abrmd libtss2-tcti-tabrmd0 dbus
  libtss2-dev pkg-config build-essential
  python3 python3-venv python3-gpg python3-cryptography openssl xxd
  ca-certificates curl
)
KEYLIME_VERSION=7.14.3
# The keylime wheel declares no dependencies; these are what its registrar, verifier and tenant
# import (versions that were run together here). cryptography and gpg come from Debian.
KEYLIME_DEPS=(
  packaging==26.3 tornado==6.6.1 SQLAlchemy==2.1.9 alembic==1.20.1 Jinja2==3.1.6
  jsonschema==4.26.0 lark==1.3.1 psutil==7.2.2 pyasn1==0.6.5 pyasn1_modules==0.4.2
  requests==2.34.2 pyzmq==27.3.0
)
VENV=${VOUCH_KEYLIME_VENV:-/opt/vouch/keylime-venv}

log() { printf '[install-deps] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root for: $*  (run as root or install sudo)"; exit 1; fi
}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    log "Rust is not installed. Install it with rustup (https://rustup.rs), then run this again."
    log "Debian 12's own rustc (1.63) is too old for this workspace."
    exit 1
  fi
fi

if ! "$VENV/bin/python3" -c "import tornado, sqlalchemy, alembic, jsonschema, lark, psutil, zmq, keylime.crypto, importlib.metadata as m; assert m.version('keylime') == '$KEYLIME_VERSION'" 2>/dev/null; then
  log "creating $VENV with keylime==$KEYLIME_VERSION (upstream peer)"
  as_root mkdir -p "$(dirname "$VENV")"
  # Debian's python3-gpg is only visible to /usr/bin/python3 with system site packages.
  as_root /usr/bin/python3 -m venv --system-site-packages "$VENV"
  as_root "$VENV/bin/pip" install -q --disable-pip-version-check "keylime==$KEYLIME_VERSION" "${KEYLIME_DEPS[@]}"
fi
log "ok: $(swtpm --version | head -1); tpm2-tools $(tpm2_quote --version | sed -n 's/.*version="\([^"]*\)".*/\1/p'); keylime $KEYLIME_VERSION in $VENV"
