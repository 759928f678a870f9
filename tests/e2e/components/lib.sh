# Sourced by the scripts that build pinned Go programs for the tests (build.sh, build-argocd.sh,
# build-rollouts.sh, and tests/fixtures/argocd-rbac/oracle/build.sh): where the cache is, the Go
# environment, one output directory per pin behind a file lock, the build, and publishing it.
# A script's pin hashes this file too, so a change here rebuilds (a relink, the Go build cache
# being shared).
#
#   use_cache ROOT                 sets `cache` (GUARDRAILS_E2E_CACHE, else ~/.cache/guardrails-e2e)
#   require_go MESSAGE             exits 127 with MESSAGE unless `go` is on PATH
#   use_go [TOOLCHAIN]             the module and build caches under $cache/go, reproducible flags
#   claim NAME PIN                 sets `out`, `build_log`; waits for the lock NAME; prints `out` and
#                                  exits if it is built, else starts `out.partial` afresh
#   go_build WHAT DIR LDFLAGS OUTPUT PACKAGE...
#                                  `go build` in DIR, logged, timed; exits 1 with the log's tail
#   publish [KEEP_GLOB...]         marks `out.partial` complete, moves it to `out`, removes the
#                                  family's earlier builds (directories matching KEEP_GLOB are
#                                  another family's and stay), prints `out`

use_cache() {
    # Outside the checkout, so that a fresh clone on the same machine (CI's) reuses what an
    # earlier run built; GUARDRAILS_E2E_CACHE moves it.
    cache=${GUARDRAILS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/guardrails-e2e}
    case "$cache" in /*) ;; *) cache="$1/$cache" ;; esac
}

require_go() {
    if ! command -v go >/dev/null 2>&1; then
        echo "$1" >&2
        exit 127
    fi
}

use_go() {
    export GOMODCACHE="$cache/go/mod"
    export GOCACHE="$cache/go/cache"
    export GOFLAGS="-mod=readonly -trimpath -buildvcs=false"
    export CGO_ENABLED=0
    export GOWORK=off
    if [[ -n "${1:-}" ]]; then
        export GOTOOLCHAIN=$1
    fi
}

log() { echo "e2e components: $*" >&2; }

claim() {
    local name=$1 pin=$2
    family=$name
    out="$cache/bin/${name:+$name-}$pin"
    build_log="$cache/bin/build${name:+-$name}.log"
    mkdir -p "$cache/bin"
    exec 9>"$cache/bin/.${name:-kubernetes}.lock"
    flock 9
    if [[ -f "$out/.complete" ]]; then
        echo "$out"
        exit 0
    fi
    rm -rf "$out.partial"
    mkdir -p "$out.partial"
    : >"$build_log"
}

go_build() {
    local what=$1 dir=$2 ldflags=$3 output=$4
    shift 4
    local start=$SECONDS
    log "building $what ($*) into $out (the first build takes minutes on 2 cores; log: $build_log)"
    if ! (cd "$dir" && go build -ldflags "$ldflags" -o "$output" "$@") >>"$build_log" 2>&1; then
        tail -n 40 "$build_log" >&2
        log "building $what failed; the whole log is $build_log"
        exit 1
    fi
    echo "$what $((SECONDS - start))s" >>"$out.partial/build-times.txt"
    log "$what built in $((SECONDS - start))s"
}

publish() {
    touch "$out.partial/.complete"
    rm -rf "$out"
    mv "$out.partial" "$out"
    # Builds of earlier pins are not needed any more (the Go build cache keeps what they share).
    local old keep
    for old in "$cache"/bin/${family:+$family-}*/; do
        old=${old%/}
        [[ "$old" == "$out" ]] && continue
        for keep in "$@"; do
            # shellcheck disable=SC2053 # a glob, on purpose
            [[ "$old" == $cache/bin/$keep ]] && continue 2
        done
        rm -rf "$old"
    done
    echo "$out"
}
