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
# shellcheck source=lib.sh
source "$here/lib.sh"
use_cache "$(cd "$here/../../.." && pwd)"

ARGOCD_VERSION=v3.6.2
ARGOCD_TOOLCHAIN=go1.27.3

require_go "e2e: Go is not installed (no \`go\` on PATH).
The Argo CD end-to-end tests build Argo CD from its Go module. Install Go (any Go from 1.21 on
fetches the toolchain Argo CD needs from the Go module proxy, which must be reachable), then run
\`cargo test --locked\` again."
use_go "$ARGOCD_TOOLCHAIN"

pin=$(
    {
        cat "$0" "$here/lib.sh" "$here/argocd/go.mod" "$here/argocd/go.sum"
        echo "$ARGOCD_TOOLCHAIN"
        go env GOOS GOARCH
    } | sha256sum | cut -c1-16
)
claim argocd "$pin"

package=github.com/argoproj/argo-cd/v3/common
ldflags="-s -w -X $package.version=${ARGOCD_VERSION#v} -X $package.gitTag=$ARGOCD_VERSION"
ldflags+=" -X $package.gitTreeState=clean"

go_build "argocd $ARGOCD_VERSION ($ARGOCD_TOOLCHAIN)" "$here/argocd" "$ldflags" "$out.partial/argocd" \
    github.com/argoproj/argo-cd/v3/cmd
module_dir=$(cd "$here/argocd" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-cd/v3)
install -m 0755 "$module_dir/hack/git-verify-wrapper.sh" "$out.partial/git-verify-wrapper.sh"

publish
