#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every test:
#   1. unit tests (GoogleTest, fuzz seed replays) under Bazel
#   2. integration tests in tests/ against real peers (swaks, smtplib,
#      openssl, testssl.sh, HAProxy, Postfix, promtool)
#   3. a short, bounded libFuzzer run of every fuzz target (tools/fuzz.sh)
#   4. the unit tests again under ASan + UBSan (--config=asan), and the
#      SMTP, TLS, PROXY, delivery, disk-full and sink integration tests
#      against the sanitizer binaries
# The last line is "N passed, N failed, N skipped"; exit status 0 only if
# none failed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! tools/setup.sh; then
  echo "setup failed"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

passed=0
failed=0
skipped=0

add_counts() {  # "passed failed skipped"
  local p f s
  read -r p f s <<<"$1"
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
}

# bazel test exits 1 when something failed to build (there is no XML to
# count then) and 3 when tests failed (counted from the XML).
run_bazel_tests() {
  local rc=0
  bazel test "$@" //... || rc=$?
  add_counts "$(python3 tools/count_junit.py "$(bazel info "$@" bazel-testlogs 2>/dev/null)")"
  if [[ $rc -ne 0 && $rc -ne 3 ]]; then
    echo "bazel test $* exited $rc"
    failed=$((failed + 1))
  fi
}

echo "== build"
if ! bazel build //...; then
  echo "build failed"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi

echo "== unit tests"
run_bazel_tests

echo "== integration tests"
integration_out=$(mktemp)
POSTERN_BIN="$(bazel info bazel-bin)" python3 tests/run.py 2>&1 | tee "$integration_out"
last=$(tail -n 1 "$integration_out")
rm -f "$integration_out"
if [[ "$last" =~ ^INTEGRATION\ ([0-9]+)\ ([0-9]+)\ ([0-9]+)$ ]]; then
  add_counts "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
else
  echo "integration runner did not finish"
  failed=$((failed + 1))
fi

# A fixed seed and input count: the suite must give the same answer on every
# run. Exploratory fuzzing with random seeds is tools/fuzz.sh on its own.
echo "== bounded fuzzing (libFuzzer, seed ${FUZZ_SEED:-1}, ${FUZZ_RUNS:-30000} inputs per target)"
fuzz_out=$(mktemp)
FUZZ_SEED="${FUZZ_SEED:-1}" FUZZ_RUNS="${FUZZ_RUNS:-30000}" FUZZ_SECONDS="${FUZZ_SECONDS:-30}" \
  tools/fuzz.sh 2>&1 | tee "$fuzz_out"
fuzz_ok=$(grep -c '^fuzz .*: ok' "$fuzz_out" || true)
fuzz_bad=$(grep -c '^fuzz .*: \(FAILED\|BUILD FAILED\)' "$fuzz_out" || true)
rm -f "$fuzz_out"
add_counts "$fuzz_ok $fuzz_bad 0"
if [[ $fuzz_ok -eq 0 && $fuzz_bad -eq 0 ]]; then failed=$((failed + 1)); fi

echo "== unit tests under ASan+UBSan"
run_bazel_tests --config=asan

echo "== integration tests against the ASan+UBSan binaries"
asan_out=$(mktemp)
POSTERN_BIN="$(bazel info --config=asan bazel-bin)" ASAN_OPTIONS=detect_leaks=0 \
  UBSAN_OPTIONS=print_stacktrace=1 python3 tests/run.py "test_[dfpst]*.py" 2>&1 | tee "$asan_out"
last=$(tail -n 1 "$asan_out")
rm -f "$asan_out"
if [[ "$last" =~ ^INTEGRATION\ ([0-9]+)\ ([0-9]+)\ ([0-9]+)$ ]]; then
  add_counts "${BASH_REMATCH[1]} ${BASH_REMATCH[2]} ${BASH_REMATCH[3]}"
else
  echo "asan integration runner did not finish"
  failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
