#!/usr/bin/env bash
# Start, on loopback only, everything a conformance run needs, each process recorded by PID in
# $RUN/pids (stop.sh stops exactly those):
#   - a CA (openssl) for every TLS server here, and a client certificate for the mtls variant;
#   - FerretDB (SQLite backend) on 127.0.0.1:$FERRET_PORT, the suite's MongoDB;
#   - the suite's jar on 127.0.0.1:$SUITE_PORT (devmode: its API needs no login);
#   - nginx as its TLS terminator, as the suite's own compose files have it: https://localhost:8443
#     (no client certificate) and https://localhost:8444 (client certificate requested, passed on
#     in X-Ssl-Cert);
#   - etcd + kube-apiserver from the e2e control-plane binaries, the CRDs, and the operator
#     binary (admin kubeconfig; --allowed-as-hosts localhost).
# Usage: start.sh RUN_DIR. Writes RUN_DIR/env for the driver.
set -euo pipefail

RUN=${1:?usage: start.sh RUN_DIR}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
CONF=$CACHE/conformance
CP=${TPP_CONTROL_PLANE_DIR:-$CACHE/control-plane/$(sed -n 's/^KUBE_VERSION=//p' "$REPO/hack/versions.env")}
OPERATOR=${TPP_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/tpp-operator}
FERRET_PORT=${FERRET_PORT:-27017}
SUITE_PORT=${SUITE_PORT:-18080}
ETCD_PORT=${ETCD_PORT:-23790}
APISERVER_PORT=${APISERVER_PORT:-26443}
NAMESPACE=${CONFORMANCE_NAMESPACE:-conformance}
mkdir -p "$RUN"/{pki,ferret,nginx,etcd,logs}
: > "$RUN/pids"

for f in "$CONF/suite/target/fapi-test-suite.jar" "$CONF/bin/ferretdb" "$CP/etcd" "$CP/kube-apiserver" "$CP/kubectl" "$OPERATOR"; do
  [ -e "$f" ] || { echo "start.sh: $f is missing (hack/conformance/build.sh, make control-plane, cargo build -p tpp-operator --bins)" >&2; exit 1; }
done

started() { echo "$2 $1" >> "$RUN/pids"; }
# Bounded wait for a condition; prints the log tail on timeout.
wait_for() { # seconds log cmd...
  local secs=$1 log=$2; shift 2
  for _ in $(seq 1 "$secs"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "start.sh: timed out after ${secs}s waiting for: $*" >&2; tail -30 "$log" >&2; return 1
}

# --- PKI -------------------------------------------------------------------------------------
P=$RUN/pki
leaf() { # name subject san eku
  openssl req -newkey rsa:2048 -nodes -keyout "$P/$1.key" -subj "$2" -out "$P/$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s' \
    "$4" "${3:+subjectAltName=$3}" > "$P/$1.ext"
  openssl x509 -req -in "$P/$1.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -days 7 \
    -extfile "$P/$1.ext" -out "$P/$1.crt" 2>/dev/null
}
if [ ! -f "$P/ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 7 \
    -subj "/CN=tpp-operator conformance CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  leaf server "/CN=localhost" "DNS:localhost,IP:127.0.0.1" serverAuth
  leaf admin "/O=system:masters/CN=conformance-admin" "" clientAuth
  # The mtls variant's transport certificate (tls_client_auth), given to the operator by SecretRef.
  leaf mtls-client "/C=GB/O=tpp-operator conformance/CN=conformance-mtls" "" clientAuth
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
fi
chmod 600 "$P"/*.key

# --- FerretDB --------------------------------------------------------------------------------
"$CONF/bin/ferretdb" --handler=sqlite --sqlite-url="file:$RUN/ferret/" \
  --listen-addr="127.0.0.1:$FERRET_PORT" --telemetry=disable --log-level=warn \
  --state-dir="$RUN/ferret" > "$RUN/logs/ferretdb.log" 2>&1 &
started $! ferretdb
wait_for 30 "$RUN/logs/ferretdb.log" bash -c "exec 3<>/dev/tcp/127.0.0.1/$FERRET_PORT"

# --- the suite -------------------------------------------------------------------------------
java -Djdk.tls.maxHandshakeMessageSize=65536 -Xmx1g -jar "$CONF/suite/target/fapi-test-suite.jar" \
  --server.address=127.0.0.1 --server.port="$SUITE_PORT" \
  --fintechlabs.devmode=true \
  --fintechlabs.base_url=https://localhost:8443 --fintechlabs.base_mtls_url=https://localhost:8444 \
  --spring.data.mongodb.uri="mongodb://127.0.0.1:$FERRET_PORT/test_suite" \
  --openid.mongodb.targetFeatureCompatibilityVersion= \
  > "$RUN/logs/suite.log" 2>&1 &
started $! suite

# --- nginx (the suite's nginx-nodocker.conf, on loopback, with our certificate) ---------------
cat > "$RUN/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $RUN/nginx/nginx.pid;
error_log $RUN/logs/nginx-error.log;
events { worker_connections 256; }
http {
  access_log $RUN/logs/nginx-access.log;
  client_body_temp_path $RUN/nginx/body; proxy_temp_path $RUN/nginx/proxy;
  fastcgi_temp_path $RUN/nginx/fastcgi; uwsgi_temp_path $RUN/nginx/uwsgi; scgi_temp_path $RUN/nginx/scgi;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_prefer_server_ciphers on;
  ssl_certificate $P/server.crt;
  ssl_certificate_key $P/server.key;
  proxy_read_timeout 120s; proxy_send_timeout 120s;
$(for port in 8443 8444; do cat <<SRV
  server {
    listen 127.0.0.1:$port ssl;
    server_name localhost;
    ssl_verify_client $([ $port = 8443 ] && echo off || echo optional_no_ca);
    client_header_buffer_size 32k; large_client_header_buffers 4 32k;
    location / {
      proxy_pass http://127.0.0.1:$SUITE_PORT;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
      proxy_set_header X-Forwarded-Port $port;
      proxy_set_header X-Forwarded-Uri \$request_uri;
      proxy_set_header X-Ssl-Cipher \$ssl_cipher;
      proxy_set_header X-Ssl-Protocol \$ssl_protocol;
      proxy_set_header X-Ssl-Cert \$ssl_client_cert;
      proxy_set_header Forwarded "by=\$server_addr;for=\$remote_addr;host=\$host;proto=\$scheme";
      proxy_pass_request_headers on;
    }
  }
SRV
done)
}
NGINX
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
"$NGINX_BIN" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -g 'daemon off;' > "$RUN/logs/nginx.log" 2>&1 &
started $! nginx

# --- etcd + kube-apiserver + CRDs ------------------------------------------------------------
"$CP/etcd" --name conformance --data-dir "$RUN/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" \
  --initial-cluster "conformance=http://127.0.0.1:$((ETCD_PORT+1))" \
  --unsafe-no-fsync --log-level warn > "$RUN/logs/etcd.log" 2>&1 &
started $! etcd
wait_for 30 "$RUN/logs/etcd.log" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
"$CP/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
  --tls-cert-file="$P/server.crt" --tls-private-key-file="$P/server.key" --client-ca-file="$P/ca.crt" \
  --anonymous-auth=false --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-signing-key-file="$P/sa.key" --service-account-key-file="$P/sa.pub" \
  --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
  --disable-admission-plugins=ServiceAccount --cert-dir="$RUN/pki/apiserver" --profiling=false --v=1 \
  > "$RUN/logs/kube-apiserver.log" 2>&1 &
started $! kube-apiserver
KC=$RUN/admin.kubeconfig
"$CP/kubectl" config --kubeconfig "$KC" set-cluster c --server "https://127.0.0.1:$APISERVER_PORT" \
  --certificate-authority "$P/ca.crt" --embed-certs >/dev/null
"$CP/kubectl" config --kubeconfig "$KC" set-credentials admin --client-certificate "$P/admin.crt" \
  --client-key "$P/admin.key" --embed-certs >/dev/null
"$CP/kubectl" config --kubeconfig "$KC" set-context c --cluster c --user admin >/dev/null
"$CP/kubectl" config --kubeconfig "$KC" use-context c >/dev/null
chmod 600 "$KC"
K() { "$CP/kubectl" --kubeconfig "$KC" "$@"; }
wait_for 120 "$RUN/logs/kube-apiserver.log" K get --raw /readyz
K apply --server-side -f "$REPO/crds/" >/dev/null
K wait --for=condition=Established --timeout=60s crd --all >/dev/null
K create namespace "$NAMESPACE" >/dev/null 2>&1 || true
K create namespace tpp-system >/dev/null 2>&1 || true

# --- the operator ----------------------------------------------------------------------------
KUBECONFIG=$KC POD_NAMESPACE=tpp-system RUST_LOG=${CONFORMANCE_OPERATOR_LOG:-info,tpp_operator=debug} \
  "$OPERATOR" --admin-address 127.0.0.1:18081 --jwks-address 127.0.0.1:18082 \
  --allowed-as-hosts localhost --namespaces "$NAMESPACE" > "$RUN/logs/operator.log" 2>&1 &
started $! tpp-operator
wait_for 60 "$RUN/logs/operator.log" curl -sf http://127.0.0.1:18081/readyz

# The suite last: it is the slowest to start. Through nginx: the suite refuses plain http
# (it expects X-Forwarded-Proto from its TLS terminator).
wait_for 240 "$RUN/logs/suite.log" curl -sf --cacert "$P/ca.crt" "https://localhost:8443/api/runner/available"

cat > "$RUN/env" <<ENV
KUBECTL=$CP/kubectl
KUBECONFIG=$KC
NAMESPACE=$NAMESPACE
CA=$P/ca.crt
MTLS_CLIENT_CRT=$P/mtls-client.crt
MTLS_CLIENT_KEY=$P/mtls-client.key
SUITE_API=https://localhost:8443/api/
SUITE_COMMIT=$(cat "$CONF/suite/.suite-commit")
ENV
echo "conformance environment up: $RUN (pids in $RUN/pids)"
