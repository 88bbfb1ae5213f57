#!/usr/bin/env bash
# scripts/sign.sh — re-sign the compiled havm binary with the entitlements of a build tier (macOS only).
#   scripts/sign.sh <binary> [tier]          tier: 1|free (default), 2|usb, 3|bridged
#   SIGN_IDENTITY="Developer ID Application: ..." scripts/sign.sh dist/havm 2
# Tier 1 signs ad hoc ("-"): virtualization only. Tiers 2 and 3 carry restricted entitlements
# (com.apple.developer.accessory-access.usb, com.apple.vm.networking) that need a real identity and a
# provisioning profile: macOS kills an ad hoc binary carrying them at exec, so this script refuses that.
# Entitlements belong to the main executable; the embedded libhavm dylib inherits them.
# `bun build --compile` leaves a linker signature (sometimes an invalid one): it is removed first, and the
# result is verified strictly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(uname -s)" != Darwin ]; then
  echo "sign.sh: codesign exists only on macOS; sign the binary on a Mac (scripts/sign.sh <binary> [tier])." >&2
  exit 4
fi
[ $# -ge 1 ] || { echo "usage: scripts/sign.sh <binary> [1|free|2|usb|3|bridged]" >&2; exit 2; }
bin=$1
tier=${2:-1}
case "$tier" in
  1|free) plist=$root/shim/entitlements/tier1-free.plist; tier=1 ;;
  2|usb) plist=$root/shim/entitlements/tier2-usb.plist; tier=2 ;;
  3|bridged) plist=$root/shim/entitlements/tier3-bridged.plist; tier=3 ;;
  *) echo "sign.sh: unknown tier '$tier' (1|free, 2|usb, 3|bridged)" >&2; exit 2 ;;
esac
[ -f "$bin" ] || { echo "sign.sh: no such binary: $bin" >&2; exit 2; }
identity=${SIGN_IDENTITY:--}
if [ "$tier" != 1 ] && [ "$identity" = - ]; then
  echo "sign.sh: tier $tier needs SIGN_IDENTITY (a Developer ID) and a provisioning profile that grants its" >&2
  echo "  entitlements; an ad hoc signature carrying them is killed at launch. Use tier 1 for an ad hoc build." >&2
  exit 2
fi

codesign --remove-signature "$bin"
codesign --force --sign "$identity" --entitlements "$plist" "$bin"
codesign --verify --strict --verbose=2 "$bin"
echo "signed $bin (tier $tier, identity $identity):"
codesign -d --entitlements - "$bin" 2>/dev/null | sed -n '/<dict>/,/<\/dict>/p'
