#!/usr/bin/env bash
# Runs every native Go fuzz target (func FuzzXxx in a *_test.go file) for a
# bounded time, one at a time: go test accepts one -fuzz target per run.
#
#   bash .ci/fuzz.sh                # every target, FUZZTIME each
#   FUZZTIME=2m bash .ci/fuzz.sh Upload   # only targets whose name matches
#
# FUZZTIME (default 20s) is the fuzzing time per target; FUZZMINIMIZETIME
# (default 2s) bounds the minimizing of each new input, which otherwise
# takes up to a minute of the budget. A failing input is written to the
# package's testdata/fuzz/<Target>/; keep it there as a regression case once
# fixed. Plain `go test ./...` runs every seed corpus without fuzzing.
# Exits non-zero when any target fails or none is found.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-20s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-2s}
filter=${1:-.}

# "<package dir> <target>" for every fuzz target, sorted.
mapfile -t targets < <(
  grep -rEo --include='*_test.go' --exclude-dir=testdata --exclude-dir=vendor --exclude-dir=node_modules \
    '^func Fuzz[A-Za-z0-9_]*\(' . |
    sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#' |
    grep -E " .*${filter}" | sort -u
)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no fuzz targets match '${filter}'" >&2
  exit 1
fi

echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each (minimize ${FUZZMINIMIZETIME})"
failed=()
summary=()
start_all=$SECONDS
for t in "${targets[@]}"; do
  pkg=${t% *}
  name=${t#* }
  printf '\n== %s (%s)\n' "$name" "$pkg"
  start=$SECONDS
  if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "$pkg"; then
    status=PASS
  else
    status=FAIL
    failed+=("$name ($pkg)")
  fi
  summary+=("$(printf '%-4s %-24s %-22s %4ds' "$status" "$name" "$pkg" $((SECONDS - start)))")
done

printf '\n== fuzz summary (%ds in all)\n' $((SECONDS - start_all))
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  printf '\nfuzz: %d target(s) failed:\n' ${#failed[@]} >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
