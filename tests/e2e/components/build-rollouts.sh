#!/usr/bin/env bash
# Builds the pinned Argo Rollouts the end-to-end tests run (the controller, `rollouts-controller`,
# and the kubectl plugin, `kubectl-argo-rollouts`) from its published Go module, once per pin, and
# prints the directory holding them, with Argo Rollouts' CRDs (`crds/`) and the controller's
# ClusterRole (`argo-rollouts-clusterrole.yaml`) from the same module.
#
#   tests/e2e/components/build-rollouts.sh   # -> ~/.cache/guardrails-e2e/bin/rollouts-<pin-hash>
#
# The pins are rollouts/go.mod and rollouts/go.sum beside this script: a wrapper module requiring
# github.com/argoproj/argo-rollouts with Argo Rollouts' own replace block (it requires
# k8s.io/kubelet v0.0.0 and builds only with it). Argo Rollouts v1.10 needs Go 1.26.10 or newer:
# this build runs with the same GOTOOLCHAIN as build-argocd.sh (fetched from the module proxy into
# the module cache once for both). Like build.sh: the output directory is named after a hash of
# the pins, this script and the toolchain; the module and build caches are the other components'
# (~/.cache/guardrails-e2e/go); concurrent callers serialise on a file lock of their own. The first
# build takes ≈ 4 minutes on 2 cores and adds ≈ 1.3 GB of modules and ≈ 1.5 GB of build cache (with
# the Kubernetes and Argo CD builds' caches in place); a relink takes ≈ 11 s.
#
# The plugin's `dashboard` command embeds the web UI (`//go:embed static/*` in server/server_static.go;
# the page is built by yarn in Argo Rollouts' Makefile and is not part of the Go module, and
# `go build -overlay` may not add files under GOMODCACHE): the build copies the module (≈ 30 MB),
# adds a one-line placeholder page and builds that copy; the Go code is the module's, unchanged.
# The tests never run the dashboard.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
use_cache "$(cd "$here/../../.." && pwd)"

ROLLOUTS_VERSION=v1.10.2
ROLLOUTS_TOOLCHAIN=go1.27.3

require_go "e2e: Go is not installed (no \`go\` on PATH).
The Argo Rollouts end-to-end tests build Argo Rollouts from its Go module. Install Go (any Go from
1.21 on fetches the toolchain Argo Rollouts needs from the Go module proxy, which must be
reachable), then run \`cargo test --locked\` again."
use_go "$ROLLOUTS_TOOLCHAIN"

pin=$(
    {
        cat "$0" "$here/lib.sh" "$here/rollouts/go.mod" "$here/rollouts/go.sum"
        echo "$ROLLOUTS_TOOLCHAIN"
        go env GOOS GOARCH
    } | sha256sum | cut -c1-16
)
claim rollouts "$pin"

module=github.com/argoproj/argo-rollouts
# `go list -m` names the module's directory only once it is in the module cache: download it
# first (a fresh machine has nothing there).
if ! (cd "$here/rollouts" && go mod download "$module") >>"$build_log" 2>&1; then
    tail -n 40 "$build_log" >&2
    log "downloading $module failed; the whole log is $build_log"
    exit 1
fi
module_dir=$(cd "$here/rollouts" && go list -m -f '{{.Dir}}' "$module")
if [[ -z "$module_dir" || ! -d "$module_dir" ]]; then
    log "$module is not in the module cache after downloading it (GOMODCACHE=$GOMODCACHE)"
    exit 1
fi

# As Argo Rollouts' Makefile sets them for a tagged, clean tree (its gitTag line names the wrong
# package; `version` prints the tag only when commit, tag and tree state are all set). The module
# proxy does not say which commit a tag is: the tag stands in for it.
package=$module/utils/version
ldflags="-s -w -X $package.version=${ROLLOUTS_VERSION#v} -X $package.gitTag=$ROLLOUTS_VERSION"
ldflags+=" -X $package.gitCommit=$ROLLOUTS_VERSION -X $package.gitTreeState=clean"
ldflags+=" -X $package.buildDate=1970-01-01T00:00:00Z"

# The plugin's dashboard embeds `server/static/*` (see above): build from a copy of the module
# with a placeholder page added, the wrapper's go.mod replacing the module by that copy.
work="$out.partial/build"
mkdir -p "$work"
cp -R "$module_dir" "$work/argo-rollouts"
chmod -R u+w "$work/argo-rollouts"
mkdir -p "$work/argo-rollouts/server/static"
echo '<!doctype html><title>Argo Rollouts</title><p>The dashboard UI is not built for the e2e tests.' \
    >"$work/argo-rollouts/server/static/index.html"
cp "$here/rollouts/go.mod" "$here/rollouts/go.sum" "$work/"
(cd "$work" && go mod edit -replace "$module=./argo-rollouts")

go_build "Argo Rollouts $ROLLOUTS_VERSION ($ROLLOUTS_TOOLCHAIN)" "$work" "$ldflags" "$out.partial/" \
    "$module/cmd/rollouts-controller" "$module/cmd/kubectl-argo-rollouts"
rm -rf "$work"
mkdir -p "$out.partial/crds"
for crd in "$module_dir"/manifests/crds/*-crd.yaml; do
    install -m 0644 "$crd" "$out.partial/crds/"
done
install -m 0644 "$module_dir/manifests/role/argo-rollouts-clusterrole.yaml" "$out.partial/"

publish
