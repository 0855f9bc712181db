#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every test:
#   1. unit tests (GoogleTest, fuzz seed replays) under Bazel
#   2. the same under ASan + UBSan (--config=asan)
#   3. integration tests in tests/ against real peers (swaks, smtplib, promtool,
#      HAProxy)
#   4. a short, bounded libFuzzer run of every fuzz target (tools/fuzz.sh)
# The last line is "N passed, N failed, N skipped"; exit status 0 only if none failed.
set -uo pipefail
cd "$(dirname "$0")/.."

tools/setup.sh || { echo "setup failed"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
skipped=0

# Counts test cases from the JUnit XML files Bazel leaves in bazel-testlogs.
count_bazel_results() {
  local logs="$1"
  local counts
  counts=$(python3 tools/count_junit.py "$logs")
  read -r p f s <<<"$counts"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
}

echo "== build"
if ! bazel build //...; then
  echo "build failed"
  echo "$passed passed, $((failed + 1)) failed"
  exit 1
fi

# bazel test exits 1 when something failed to build (no XML to count then),
# 3 when tests failed (counted from the XML).
run_bazel_tests() {
  local rc=0
  bazel test "$@" //... || rc=$?
  count_bazel_results "$(bazel info "$@" bazel-testlogs 2>/dev/null)"
  if [[ $rc -ne 0 && $rc -ne 3 ]]; then
    echo "bazel test $* exited $rc"
    failed=$((failed + 1))
  fi
}

echo "== unit tests"
run_bazel_tests

echo "== unit tests under ASan+UBSan"
run_bazel_tests --config=asan

echo "$passed passed, $((failed + 1)) failed"
  exit 1
fi

# bazel test exits 1 when something failed to build (no XML to count then),
# 3 when tests failed (counted from the XML).
run_bazel_tests() {
  local rc=0
  bazel test "$@" //... || rc=$?
  count_bazel_results "$(bazel info "$@" bazel-testlogs 2>/dev/null)"
  if [[ $rc -ne 0 && $rc -ne 3 ]]; then
    echo "bazel test $* exited $rc"
    failed=$((failed + 1))
  fi
}

echo "== unit tests"
run_bazel_tests

echo "== unit tests under ASan+UBSan"
run_bazel_tests --config=asan

echo "== integration tests"
integration_out=$(mktemp)
POSTERN_BIN="$(bazel info bazel-bin)" python3 tests/run.py 2>&1 | tee "$integration_out"
read -r p f s < <(tail -n 1 "$integration_out" | sed -E 's/^INTEGRATION ([0-9]+) ([0-9]+) ([0-9]+)$/\1 \2 \3/')
rm -f "$integration_out"
if [[ "$p" =~ ^[0-9]+$ ]]; then
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
else
  failed=$((failed + 1))
fi

echo "== bounded fuzzing (libFuzzer, ${FUZZ_SECONDS:-5}s per target)"
fuzz_out=$(mktemp)
FUZZ_SECONDS="${FUZZ_SECONDS:-5}" tools/fuzz.sh 2>&1 | tee "$fuzz_out"
fuzz_ok=$(grep -c '^fuzz .*: ok' "$fuzz_out" || true)
fuzz_bad=$(grep -c '^fuzz .*: \(FAILED\|BUILD FAILED\)' "$fuzz_out" || true)
rm -f "$fuzz_out"
passed=$((passed + fuzz_ok)); failed=$((failed + fuzz_bad))
if [[ $fuzz_ok -eq 0 && $fuzz_bad -eq 0 ]]; then failed=$((failed + 1)); fi

echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
