#!/usr/bin/env bash
# Record convtranspose's performance history with asv (asv.conf.json at the repository root):
#   1. `asv run` on every commit of RANGE (default: `main`; merged branches count as their
#      merge commit, `--first-parent`), one commit at a time, each
#      with a fresh NUMBA_CACHE_DIR: Numba's disk cache keys a kernel on its own source file
#      and would serve stale machine code after an edit to a helper in another file (asv also
#      uninstalls the previous commit's package, and its __pycache__, before installing the next);
#   2. `asv continuous --factor 1.2 BASE HEAD` on the float32 `auto` timings of every suite
#      shape (ASV_CONTINUOUS_BENCH, a regex over "name(params)", widens it): exits non-zero
#      when HEAD is more than 20% slower than BASE on any of them;
#   3. `asv publish`: the HTML report in .asv/html (`asv preview` serves it);
#   4. with --save-docs, copies this machine's results to docs/asv-results/.
#
# Usage: scripts/asv_history.sh [--save-docs] [--no-continuous] [RANGE [BASE [HEAD]]]
#   RANGE, BASE, HEAD are git revisions; RANGE as for `git rev-list` (default: main),
#   BASE/HEAD default to main~1 and main. ASV_BENCH (a regex) limits the benchmarks run.
#   ASV_MACHINE names this machine in the results (default: asv's, the host name); the
#   project's machines change between sessions under one host name, so give each CPU its
#   own (e.g. ASV_MACHINE=epyc-zen4-avx512) and its history stays apart from the others'.
set -euo pipefail
cd "$(dirname "$0")/.."

save_docs=0
continuous=1
while [[ "${1:-}" == --* ]]; do
    case "$1" in
        --save-docs) save_docs=1 ;;
        --no-continuous) continuous=0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
range=${1:-main}
base=${2:-main~1}
head=${3:-main}
bench=()
if [[ -n "${ASV_BENCH:-}" ]]; then bench=(--bench "$ASV_BENCH"); fi

fresh_cache() { mktemp -d "${TMPDIR:-/tmp}/asv-numba-cache.XXXXXX"; }

machine=()
if [[ -n "${ASV_MACHINE:-}" ]]; then machine=(--machine "$ASV_MACHINE"); fi
asv machine --yes "${machine[@]}" >/dev/null

# 1. history, oldest commit first, each commit with its own empty Numba cache
for commit in $(git rev-list --first-parent --reverse "$range"); do
    cache=$(fresh_cache)
    echo "== asv run ${commit:0:8} (NUMBA_CACHE_DIR=$cache)"
    NUMBA_CACHE_DIR=$cache asv run --skip-existing-successful "${machine[@]}" "${bench[@]}" \
        "$commit^!" \
        || echo "asv run failed on ${commit:0:8}; continuing"
    rm -rf "$cache"
done

# 2. regressions of HEAD against BASE (exit status kept for the end)
status=0
if (( continuous )); then
    cache=$(fresh_cache)
    NUMBA_CACHE_DIR=$cache asv continuous --factor 1.2 "${machine[@]}" \
        --bench "${ASV_CONTINUOUS_BENCH:-time_forward\(.*'auto', 'float32'\)}" \
        "$base" "$head" || status=$?
    rm -rf "$cache"
fi

# 3. the HTML report
asv publish

# 4. keep this machine's results with the repository
if (( save_docs )); then
    mkdir -p docs/asv-results
    cp -r .asv/results/. docs/asv-results/
    echo "copied .asv/results to docs/asv-results"
fi
if (( status )); then
    echo "asv continuous: HEAD ($head) is slower than BASE ($base) by more than 20% (see above)"
fi
exit "$status"
