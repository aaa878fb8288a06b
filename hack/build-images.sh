#!/usr/bin/env bash
# Builds the images of the e2e node tier with a private Docker daemon (Debian's docker.io,
# its own data root under the cache, its own socket, no bridge, no iptables) and saves them
# as tarballs the node's containerd imports:
#   tpp-operator:e2e        the repository's Dockerfile, BINARY=prebuilt (host-built binary)
#   tpp-e2e-consumer:e2e    the workload that mounts a credentials Secret
#   tpp-e2e-pause:e2e       the pod sandbox image
# on a runtime base (tpp-e2e-runtime-base:e2e) made from exactly the shared libraries `ldd`
# lists for the binaries, since no registry can be reached here.
# Usage: hack/build-images.sh <tpp-operator binary> <credentials-consumer binary> <pause binary>
# Prints the folder holding the tarballs (and image-sizes.txt) on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
[ $# -eq 3 ] || { echo "usage: $0 <tpp-operator> <credentials-consumer> <pause>" >&2; exit 2; }
operator_bin=$1 consumer_bin=$2 pause_bin=$3
for b in "$operator_bin" "$consumer_bin" "$pause_bin"; do
  [ -x "$b" ] || { echo "$b: not an executable" >&2; exit 1; }
done
cache_root=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}
out="$cache_root/images"
docker_bin=${DOCKER:-/usr/bin/docker}
for tool in dockerd "$docker_bin" ldd strip; do
  command -v "$tool" >/dev/null || { echo "$tool is required (apt-get install docker.io binutils)" >&2; exit 1; }
done
mkdir -p "$out"
# The runtime binary must not need a system OpenSSL.
if ldd "$operator_bin" | grep -Eq 'lib(ssl|crypto)\.so'; then
  echo "$operator_bin links a system OpenSSL; build it with --features vendored-openssl" >&2
  exit 1
fi

run=$(mktemp -d /tmp/tpp-images.XXXXXX)
sock="$run/docker.sock"
dockerd_pid=
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
  fi
  rm -rf "$run"
}
trap cleanup EXIT
dockerd --data-root "$cache_root/docker-root" --exec-root "$run/exec" --pidfile "$run/dockerd.pid" \
  -H "unix://$sock" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
  --userland-proxy=false --log-level=warn >"$run/dockerd.log" 2>&1 &
dockerd_pid=$!
export DOCKER_HOST="unix://$sock" DOCKER_BUILDKIT=1
for _ in $(seq 1 300); do
  "$docker_bin" version >/dev/null 2>&1 && break
  kill -0 "$dockerd_pid" 2>/dev/null || { cat "$run/dockerd.log" >&2; exit 1; }
  sleep 0.1
done
"$docker_bin" version >/dev/null || { cat "$run/dockerd.log" >&2; exit 1; }

# Runtime base: the libraries ldd lists (with the dynamic loader), CA certificates, /tmp and
# the nonroot user, as distroless has them.
base="$run/base"
mkdir -p "$base/rootfs/etc/ssl/certs" "$base/rootfs/tmp"
chmod 1777 "$base/rootfs/tmp"
for b in "$operator_bin" "$consumer_bin"; do
  ldd "$b" | grep -oE '/[^ ]+' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$base/rootfs$lib"
  done
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$base/rootfs/etc/group"
printf 'hosts: files dns\n' >"$base/rootfs/etc/nsswitch.conf"
mkdir -p "$base/rootfs/home/nonroot"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$base/rootfs/etc/ssl/certs/"
echo "runtime base libraries:" >&2; (cd "$base/rootfs" && find . -name '*.so*' | sort) >&2
"$docker_bin" build -q --network host -f "$here/images/runtime-base.Dockerfile" -t tpp-e2e-runtime-base:e2e "$base" >/dev/null

# The operator, through the repository's Dockerfile with the host-built binary.
ctx="$run/operator"; mkdir -p "$ctx"
strip -o "$ctx/tpp-operator" "$operator_bin"
"$docker_bin" build -q --network host -f "$repo/Dockerfile" --build-arg BINARY=prebuilt \
  --build-arg RUNTIME_IMAGE=tpp-e2e-runtime-base:e2e -t tpp-operator:e2e "$ctx" >/dev/null

ctx="$run/consumer"; mkdir -p "$ctx"
strip -o "$ctx/credentials-consumer" "$consumer_bin"
"$docker_bin" build -q --network host -f "$here/images/consumer.Dockerfile" \
  --build-arg RUNTIME_IMAGE=tpp-e2e-runtime-base:e2e -t tpp-e2e-consumer:e2e "$ctx" >/dev/null

ctx="$run/pause"; mkdir -p "$ctx"
cp "$pause_bin" "$ctx/pause"
"$docker_bin" build -q --network host -f "$here/images/pause.Dockerfile" -t tpp-e2e-pause:e2e "$ctx" >/dev/null

: >"$out/image-sizes.txt"
for image in tpp-operator:e2e tpp-e2e-consumer:e2e tpp-e2e-pause:e2e; do
  file="$out/${image%%:*}.tar"
  "$docker_bin" save -o "$file.tmp" "$image"
  mv "$file.tmp" "$file"
  echo "$image $("$docker_bin" image inspect -f '{{.Size}}' "$image")" >>"$out/image-sizes.txt"
done
# The operator image runs as 65532 and has no shell.
user=$("$docker_bin" image inspect -f '{{.Config.User}}' tpp-operator:e2e)
[ "$user" = "65532:65532" ] || { echo "tpp-operator:e2e runs as '$user', expected 65532:65532" >&2; exit 1; }
cid=$("$docker_bin" create tpp-operator:e2e)
files=$("$docker_bin" export "$cid" | tar -t)
"$docker_bin" rm "$cid" >/dev/null
if grep -Eq '^(usr/)?bin/(ba|da)?sh$' <<<"$files"; then
  echo "tpp-operator:e2e has a shell" >&2; exit 1
fi
cat "$out/image-sizes.txt" >&2
echo "$out"
