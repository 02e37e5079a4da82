#!/usr/bin/env bash
# Writes the TLS fixtures of backend/server/tests/webhook_tls.rs: a test CA and a certificate for
# localhost / 127.0.0.1 signed by it (ECDSA P-256, valid 100 years). Test-only; never used by a server.
set -euo pipefail
out=${1:-backend/server/tests/fixtures/tls}
mkdir -p "$out"
cd "$out"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
  -subj "/CN=cemiface test CA" -keyout ca.key -out ca.pem \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout leaf.key -out leaf.csr
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 -out leaf.pem \
  -extfile <(printf "basicConstraints=critical,CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
openssl pkcs8 -topk8 -nocrypt -in leaf.key -out leaf.key.pk8
mv leaf.key.pk8 leaf.key
rm -f leaf.csr ca.key ca.srl
