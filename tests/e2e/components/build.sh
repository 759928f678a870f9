#!/usr/bin/env bash
# Builds the pinned Kubernetes components the end-to-end tests run (kube-apiserver, kubectl, etcd,
# helm) from their published Go modules, once per pin, and prints the directory holding them.
#
#   tests/e2e/components/build.sh          # -> ~/.cache/guardrails-e2e/bin/<pin-hash>
#
# The pins are the go.mod/go.sum files beside this script (one Go module per component, so their
# dependency graphs never mix). The output directory is named after a hash of those files, this
# script and the Go version: nothing is rebuilt until one of them changes. The module download cache
# and the build cache live under ~/.cache/guardrails-e2e/go, so a fresh clone fetches and compiles them once.
# Concurrent callers (parallel test binaries, two checkouts on one machine) serialise on a
# file lock; the second one finds the finished build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# Outside the checkout, so that a fresh clone on the same machine (CI's) reuses what an earlier
# run built; GUARDRAILS_E2E_CACHE moves it.
cache=${GUARDRAILS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardrails-e2e}
case "$cache" in /*) ;; *) cache="$root/$cache" ;; esac

if ! command -v go >/dev/null 2>&1; then
    cat >&2 <<'EOF'
e2e: Go is not installed (no `go` on PATH).
The end-to-end tests build a real kube-apiserver, etcd, kubectl and Helm from their Go modules.
Install Go (https://go.dev/doc/install, or Debian's `apt-get install golang-go`): 1.26 or newer,
or any Go from 1.21 on, which fetches the 1.26 toolchain itself from the Go module proxy. The module
proxy must be reachable. Then run `cargo test --locked` again.
EOF
    exit 127
fi

KUBERNETES_VERSION=v1.34.4
HELM_VERSION=v3.19.5

export GOMODCACHE="$cache/go/mod"
export GOCACHE="$cache/go/cache"
export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
export CGO_ENABLED=0
export GOWORK=off

pin=$(
    {
        cat "$0"
        for component in kubernetes etcd helm; do
            cat "$here/$component/go.mod" "$here/$component/go.sum"
        done
        go env GOVERSION GOOS GOARCH
    } | sha256sum | cut -c1-16
)
out="$cache/bin/$pin"
mkdir -p "$cache/bin"

exec 9>"$cache/bin/.lock"
flock 9

if [[ -f "$out/.complete" ]]; then
    echo "$out"
    exit 0
fi

rm -rf "$out.partial"
mkdir -p "$out.partial"
build_log="$cache/bin/build.log"
: >"$build_log"
log() { echo "e2e components: $*" >&2; }

kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean"
done

build() {
    local component=$1 ldflags=$2 output=$3
    shift 3
    local start=$SECONDS
    log "building $component ($*) into $out (the first build takes minutes; log: $build_log)"
    if ! (cd "$here/$component" && go build -ldflags "$ldflags" -o "$output" "$@") >>"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        log "building $component failed; the whole log is $build_log"
        exit 1
    fi
    echo "$component $((SECONDS - start))s" >>"$out.partial/build-times.txt"
    log "$component built in $((SECONDS - start))s"
}

build etcd "-s -w" "$out.partial/etcd" go.etcd.io/etcd/server/v3
# Like Helm's Makefile: the Kubernetes version `helm template` and `helm lint` assume is the one of
# the client-go Helm is built with (the fallback is 1.20, which charts' kubeVersion rejects).
helm_k8s_minor=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$here/helm/go.mod")
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done
build helm "$helm_ldflags" "$out.partial/helm" helm.sh/helm/v3/cmd/helm
build kubernetes "$kube_ldflags" "$out.partial/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl

touch "$out.partial/.complete"
rm -rf "$out"
mv "$out.partial" "$out"
# Builds of earlier pins are not needed any more (the Go build cache keeps what they share);
# Argo CD's and Argo Rollouts' builds are build-argocd.sh's and build-rollouts.sh's.
for old in "$cache"/bin/*/; do
    case "${old%/}" in "$out" | "$cache"/bin/argocd-* | "$cache"/bin/rollouts-*) ;; *) rm -rf "${old%/}" ;; esac
done
echo "$out"
