# Sourced by hack/build-control-plane.sh and hack/build-node.sh: a throw-away Go module in the
# current folder that requires k8s.io/kubernetes@$KUBE_VERSION with every staging module
# (required at v0.0.0 and replaced by ./staging in the kubernetes repository) mapped to the
# staging tag that mirrors the release. Needs KUBE_VERSION, GOPATH and GOCACHE set.
kube_module_init() {
  go mod init example.invalid/ktools >/dev/null 2>&1
  local minor_patch=${KUBE_VERSION#v1.}   # 36.3
  local staging="v0.$minor_patch"         # v0.36.3
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  [ -f "$gomod" ] || { echo "could not download k8s.io/kubernetes@$KUBE_VERSION" >&2; return 1; }
  local mods count
  mods=$(awk '$1 ~ /^k8s[.]io[/]/ && $2 == "v0.0.0" {print $1}' "$gomod" | sort -u)
  count=$(echo "$mods" | grep -c . || true)
  if [ "$count" -lt 20 ]; then echo "only $count staging modules found in $gomod; expected at least 20" >&2; return 1; fi
  local args=() m
  for m in $mods; do args+=("-replace=$m=$m@$staging"); done
  go mod edit "${args[@]}"
  echo "added $count staging replaces ($staging)" >&2
}

# -ldflags that stamp the Kubernetes version into a component's --version.
kube_ldflags() {
  local V=k8s.io/component-base/version minor_patch=${KUBE_VERSION#v1.}
  echo "-s -w -X $V.gitMajor=1 -X $V.gitMinor=${minor_patch%%.*} -X $V.gitVersion=$KUBE_VERSION -X $V.gitTreeState=clean -X $V.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}
