#!/usr/bin/env bash
# Prints OpenSSL's RSA-2048 sign/s on this machine, the reference to set beside the
# `rsa2048 sign/s` line of `cargo bench -p tpp-operator --bench identity`.
# (openssl speed signs PKCS#1 v1.5; the private-key operation dominates PSS alike.)
set -euo pipefail
command -v openssl >/dev/null || { echo "openssl CLI not found" >&2; exit 1; }
out="$(openssl speed -seconds 1 rsa2048 2>/dev/null)"
line="$(grep -E '^rsa +2048 bits' <<<"$out" | tail -n 1)"
[[ -n "$line" ]] || { echo "unexpected openssl speed output:" >&2; echo "$out" >&2; exit 1; }
# columns: rsa 2048 bits <sign s> <verify s> <sign/s> <verify/s>
read -r _ _ _ _ _ sign_per_s verify_per_s <<<"$line"
echo "openssl $(openssl version | cut -d' ' -f2) rsa2048 sign/s = ${sign_per_s} (verify/s = ${verify_per_s})"
