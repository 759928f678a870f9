#!/usr/bin/env bash
# Builds the pinned Argo CD the end-to-end tests run (one multi-call `argocd` binary: the CLI, and
# argocd-server, argocd-repo-server, argocd-application-controller and
# argocd-applicationset-controller chosen by ARGOCD_BINARY_NAME) from its published Go module,
# once per pin, and prints the directory holding it.
#
#   tests/e2e/components/build-argocd.sh   # -> ~/.cache/guardrails-e2e/bin/argocd-<pin-hash>
#
# The pins are argocd/go.mod and argocd/go.sum beside this script: a wrapper module requiring
# github.com/argoproj/argo-cd/v3 with Argo CD's own replace block (its dependency graph builds
# only with those). Argo CD needs a newer Go than the Kubernetes components, so this build, and
# only this one, runs with GOTOOLCHAIN (the Go command fetches that toolchain from the module
# proxy, into the module cache). Like build.sh: the output directory is named after a hash of the
# pins, this script and the toolchain; the module and build caches live under ~/.cache/guardrails-e2e/go;
# concurrent callers serialise on a file lock. It is a separate script with its own lock and
# directory so the Kubernetes components' pins and build are untouched by it; the first build
# takes ≈ 7 minutes and ≈ 5 GB of caches on 2 cores, a relink ≈ 15 s.
#
# Argo CD's repo server runs `git-verify-wrapper.sh` from PATH (its image ships it from hack/);
# it is copied beside the binary from the same module.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# Outside the checkout, so that a fresh clone on the same machine (CI's) reuses what an earlier
# run built; GUARDRAILS_E2E_CACHE moves it.
cache=${GUARDRAILS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardrails-e2e}
case "$cache" in /*) ;; *) cache="$root/$cache" ;; esac

ARGOCD_VERSION=v3.6.2
ARGOCD_TOOLCHAIN=go1.27.3

if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<'EOF'
e2e: Go is not installed (no `go` on PATH).
The Argo CD end-to-end tests build Argo CD from its Go module. Install Go (any Go from 1.21 on
fetches the toolchain Argo CD needs from the Go module proxy, which must be reachable), then run
`cargo test --locked` again.
EOF
    exit 127
fi

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/cache"
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0
export GOWORK=off
export GOTOOLCHAIN=$ARGOCD_TOOLCHAIN

pin=$(
    {
        cat "$0" "$here/argocd/go.mod" "$here/argocd/go.sum"
        echo "$ARGOCD_TOOLCHAIN"
        go env GOOS GOARCH
    } | sha256sum | cut -c1-16
)
out="$cache/bin/argocd-$pin"
mkdir -p "$cache/bin"

exec 9>"$cache/bin/.argocd.lock"
flock 9

if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
fi

rm -rf "$out.partial"
mkdir -p "$out.partial"
build_log="$cache/bin/build-argocd.log"
: >"$build_log"
log() { echo "e2e components: $*" >&2; }

package=github.com/argoproj/argo-cd/v3/common
ldflags="-s -w -X $package.version=${ARGOCD_VERSION#v} -X $package.gitTag=$ARGOCD_VERSION"
ldflags+=" -X $package.gitTreeState=clean"

start=$SECONDS
log "building argocd $ARGOCD_VERSION with $ARGOCD_TOOLCHAIN into $out (the first build takes ≈ 7 minutes on 2 cores; log: $build_log)"
if ! (cd "$here/argocd" && go build -ldflags "$ldflags" -o "$out.partial/argocd" \
    github.com/argoproj/argo-cd/v3/cmd) >>"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    log "building argocd failed; the whole log is $build_log"
    exit 1
fi
module_dir=$(cd "$here/argocd" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
install -m 0755 "$module_dir/hack/git-verify-wrapper.sh" "$out.partial/git-verify-wrapper.sh"
echo "argocd $((SECONDS - start))s" >>"$out.partial/build-times.txt"
log "argocd built in $((SECONDS - start))s"

touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
# Builds of earlier Argo CD pins are not needed any more (the Go build cache keeps what they share).
for old in "$cache"/bin/argocd-*/; do
    [[ "${old%/}" == "$out" ]] || rm -rf "${old%/}"
done
echo "$out"
