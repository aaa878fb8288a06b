#!/usr/bin/env bash
# Build what `make conformance` runs, from a checkout of the OpenID Foundation conformance suite
# that the user provides (CI cannot fetch it): the suite's jar (Maven, Java 17), FerretDB 1.x
# (the MongoDB wire-compatible store the suite needs; MongoDB is not packaged by Debian), and a
# check that nginx (the suite's mTLS terminator) is installed. Everything goes under
# $TPP_CACHE_DIR/conformance and is skipped when already built for the same suite commit.
# Heavy builds run under `nice -n 19 ionice -c3`. Usage: build.sh SUITE_DIR
set -euo pipefail

SUITE_DIR=${1:?usage: build.sh SUITE_DIR (a checkout of openid-certification/conformance-suite)}
CACHE=${TPP_CACHE_DIR:-$HOME/.cache/tpp-operator}/conformance
FERRETDB_VERSION=${FERRETDB_VERSION:-v1.24.2}
mkdir -p "$CACHE"
nice_io() { nice -n 19 ionice -c3 "$@"; }

[ -f "$SUITE_DIR/pom.xml" ] || { echo "build.sh: $SUITE_DIR has no pom.xml: not a conformance-suite checkout" >&2; exit 1; }
if git -C "$SUITE_DIR" rev-parse HEAD >/dev/null 2>&1; then
  commit=$(git -C "$SUITE_DIR" rev-parse HEAD)
elif [ -f "$SUITE_DIR/.suite-commit" ]; then
  commit=$(cat "$SUITE_DIR/.suite-commit")
else
  echo "build.sh: cannot tell the suite's commit (no git checkout, no .suite-commit file)" >&2; exit 1
fi
grep -q 'fapi2-message-signing-final-client-credentials-grant-client-test-plan' \
  "$SUITE_DIR"/src/main/java/net/openid/conformance/fapi2spfinal/*.java || {
  echo "build.sh: this suite commit ($commit) has no fapi2-message-signing-final-client-credentials-grant-client-test-plan" >&2
  echo "  (it was removed upstream in edeaa8e12; use d4b2b37218c278dbdf7e3a8dd983c8e66f38ad40, see docs/conformance.md)" >&2
  exit 1
}

# The suite is built in a copy under the cache, so the user's checkout stays untouched.
SRC=$CACHE/suite
if [ -f "$SRC/target/fapi-test-suite.jar" ] && [ "$(cat "$SRC/.suite-commit" 2>/dev/null)" = "$commit" ]; then
  echo "suite $commit already built: $SRC/target/fapi-test-suite.jar"
else
  rm -rf "$SRC"; mkdir -p "$SRC"
  (cd "$SUITE_DIR" && tar --exclude=./target --exclude=./.git -cf - .) | tar -xf - -C "$SRC"
  # multipaz (used only by the suite's mdoc / verifiable-presentation modules, not by any FAPI
  # module) 0.98.0 is not served by the Maven Central reachable here; 0.101.0 is.
  if grep -q '<version>0.98.0</version>' "$SRC/pom.xml" && [ -n "${SUITE_MULTIPAZ_VERSION:-0.101.0}" ]; then
    sed -i "s#<version>0.98.0</version>#<version>${SUITE_MULTIPAZ_VERSION:-0.101.0}</version>#g" "$SRC/pom.xml"
    python3 "$(dirname "$0")/patch-multipaz.py" "$SRC"
  fi
  # FerretDB 1.x lacks text indexes and arrayFilters (docs/conformance.md).
  python3 "$(dirname "$0")/patch-ferretdb.py" "$SRC"
  java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/ *java.specification.version = //p')
  want=$(sed -n 's#.*<java.version>\(.*\)</java.version>.*#\1#p' "$SRC/pom.xml")
  if [ -n "$want" ] && [ "$java_major" -lt "$want" ]; then
    echo "build.sh: the suite wants Java $want, java is $java_major (set JAVA_HOME)" >&2; exit 1
  fi
  echo "building the suite $commit (Maven; several minutes, dependencies from Maven Central)"
  (cd "$SRC" && nice_io mvn -B -q -Dmaven.repo.local="$CACHE/m2" -DskipTests \
      -Dmaven.gitcommitid.skip=true -Dcheckstyle.skip -Dpmd.skip -Djacoco.skip=true package) \
    > "$CACHE/mvn.log" 2>&1 || { tail -40 "$CACHE/mvn.log" >&2; exit 1; }
  echo "$commit" > "$SRC/.suite-commit"
fi

if "$CACHE/bin/ferretdb" --version >/dev/null 2>&1; then
  echo "ferretdb already built: $CACHE/bin/ferretdb"
else
  echo "building FerretDB $FERRETDB_VERSION (Go modules)"
  # Not `go install ...@version`: the module zip carries an empty build/version/version.txt and
  # the binary panics at start without it, so build from a copy of the module with it written.
  export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gocache GOFLAGS=-mod=mod
  moddir=$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  rm -rf "$CACHE/ferretdb-src"; cp -r "$moddir" "$CACHE/ferretdb-src"; chmod -R u+w "$CACHE/ferretdb-src"
  echo "$FERRETDB_VERSION" > "$CACHE/ferretdb-src/build/version/version.txt"
  mkdir -p "$CACHE/bin"
  (cd "$CACHE/ferretdb-src" && nice_io go build -o "$CACHE/bin/ferretdb.tmp" ./cmd/ferretdb)
  mv "$CACHE/bin/ferretdb.tmp" "$CACHE/bin/ferretdb"
  # The module and build caches are only needed to build; keep the disk small.
  chmod -R u+w "$CACHE/gomod" 2>/dev/null || true
  rm -rf "$CACHE/gomod" "$CACHE/gocache" "$CACHE/ferretdb-src"
fi

command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
  echo "build.sh: nginx is required (apt-get install nginx-light)" >&2; exit 1; }
for t in openssl python3 java; do command -v $t >/dev/null || { echo "build.sh: $t is required" >&2; exit 1; }; done
echo "ready: suite $commit, $("$CACHE/bin/ferretdb" --version 2>&1 | head -1)"
