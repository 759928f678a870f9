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
# shellcheck source=lib.sh
source "$here/lib.sh"
use_cache "$(cd "$here/../../.." && pwd)"

require_go "e2e: Go is not installed (no \`go\` on PATH).
The end-to-end tests build a real kube-apiserver, etcd, kubectl and Helm from their Go modules.
Install Go (https://go.dev/doc/install, or Debian's \`apt-get install golang-go\`): 1.26 or newer,
or any Go from 1.21 on, which fetches the 1.26 toolchain itself from the Go module proxy. The module
proxy must be reachable. Then run \`cargo test --locked\` again."

KUBERNETES_VERSION=v1.34.4
HELM_VERSION=v3.19.5

use_go

pin=$(
    {
        cat "$0" "$here/lib.sh"
        for component in kubernetes etcd helm; do
            cat "$here/$component/go.mod" "$here/$component/go.sum"
        done
        go env GOVERSION GOOS GOARCH
    } | sha256sum | cut -c1-16
)
# No family prefix: the Kubernetes components were here first.
claim "" "$pin"

kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    minor=${KUBERNETES_VERSION#v1.}
    minor=${minor%%.*}
    kube_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean"
done

go_build etcd "$here/etcd" "-s -w" "$out.partial/etcd" go.etcd.io/etcd/server/v3
# Like Helm's Makefile: the Kubernetes version `helm template` and `helm lint` assume is the one of
# the client-go Helm is built with (the fallback is 1.20, which charts' kubeVersion rejects).
helm_k8s_minor=$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$here/helm/go.mod")
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done
go_build helm "$here/helm" "$helm_ldflags" "$out.partial/helm" helm.sh/helm/v3/cmd/helm
go_build kubernetes "$here/kubernetes" "$kube_ldflags" "$out.partial/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl

# Argo CD's and Argo Rollouts' builds are build-argocd.sh's and build-rollouts.sh's.
publish "argocd-*" "rollouts-*"
