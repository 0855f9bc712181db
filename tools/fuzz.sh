#!/usr/bin/env bash
# Real fuzzing of Postern's pure parsers with libFuzzer.
#
#   tools/fuzz.sh [--build-only] [TARGET...]      (default: every target)
#   FUZZ_SECONDS=60 tools/fuzz.sh proxy_header_fuzz
#   FUZZ_SEED=1 FUZZ_RUNS=20000 tools/fuzz.sh      (reproducible: tools/test.sh)
#
# Under Bazel each fuzz target only replays its seed corpus (a regression
# test; see tools/build_defs/cc.bzl). This script builds the same sources with
# clang++ -fsanitize=fuzzer,address,undefined directly, outside Bazel, because
# Bazel 4's toolchain here is gcc and has no libFuzzer. Binaries go to .fuzz/
# (gitignored); protobuf code for the config target is generated there too.
#
# Each target then runs for FUZZ_SECONDS (default 20) on a temporary copy of
# its seed corpus, with a random seed unless FUZZ_SEED is set. FUZZ_RUNS
# bounds the number of inputs instead of the time (FUZZ_SECONDS stays a cap);
# a fixed seed and run count make a run repeatable, which is what the test
# suite wants, while exploratory runs keep random seeds: new inputs libFuzzer finds never land in the committed
# corpus. Add an input to testdata/ by hand when it is worth keeping.
#
# Output: one line per target, "fuzz NAME: ok (N runs)", or "fuzz NAME:
# FAILED ..." with the crashing input copied to .fuzz/crashes/. Exit status is
# non-zero if any target failed to build or crashed. Reproduce a crash with
#   .fuzz/NAME .fuzz/crashes/NAME-crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_SEED="${FUZZ_SEED:-}"
FUZZ_RUNS="${FUZZ_RUNS:-}"
OUT=.fuzz
GEN="$OUT/gen"

build_only=0
selected=()
for arg in "$@"; do
  case "$arg" in
    --build-only) build_only=1 ;;
    -h | --help)
      sed -n '2,20p' "$0"
      exit 0
      ;;
    *) selected+=("$arg") ;;
  esac
done

CXX="${CXX:-}"
if [[ -z "$CXX" ]]; then
  for candidate in clang++-14 clang++; do
    if command -v "$candidate" >/dev/null; then
      CXX="$candidate"
      break
    fi
  done
fi
if [[ -z "$CXX" ]]; then
  echo "fuzz: clang++ not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi

# The absl libraries, taken from the one place they are declared so the two
# builds cannot drift apart.
mapfile -t ABSL_LIBS < <(awk '
  /name = "absl"/ { in_absl = 1 }
  in_absl && /"-l/ { gsub(/[",[:space:]]/, ""); print }
  in_absl && /^\)/ { exit }
' third_party/BUILD.bazel)
if [[ ${#ABSL_LIBS[@]} -eq 0 ]]; then
  echo "fuzz: no absl libraries found in third_party/BUILD.bazel" >&2
  exit 1
fi

CXXFLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -I. -I"$GEN")

# name | fuzz source | other sources | seed corpus | extra link flags | extra libFuzzer flags
TARGETS=(
  "smtp_command_fuzz|engine/smtp/smtp_command_fuzz.cc|engine/smtp/smtp_command.cc common/utf8.cc|engine/smtp/testdata/smtp_command_corpus||"
  "smtp_server_session_fuzz|engine/inbound/smtp_server_session_fuzz.cc|engine/inbound/smtp_server_session.cc engine/smtp/smtp_command.cc engine/smtp/data_reader.cc engine/inbound/relay_policy.cc engine/inbound/network_list.cc engine/inbound/inbound_policy.cc common/utf8.cc|engine/inbound/testdata/smtp_server_session_corpus||"
  "smtp_reply_fuzz|engine/smtp/smtp_reply_fuzz.cc|engine/smtp/smtp_reply.cc|engine/smtp/testdata/smtp_reply_corpus||"
  "smtp_client_fuzz|engine/outbound/smtp_client_fuzz.cc|engine/outbound/smtp_client_session.cc engine/smtp/smtp_reply.cc|engine/outbound/testdata/smtp_client_corpus||"
  # -max_len above kMaxProxyHeaderSize (4096), so oversized headers are tried.
  "proxy_header_fuzz|engine/net/proxy_header_fuzz.cc|engine/net/proxy_header.cc|engine/net/testdata/proxy_header_corpus||-max_len=5000"
  "config_loader_fuzz|control/config_loader_fuzz.cc|control/config_loader.cc control/config_defaults.cc common/quote.cc common/utf8.cc $GEN/proto/config.pb.cc|control/testdata/config_corpus|-lprotobuf -lyaml-cpp|"
)

# The config schema's generated code, from Debian's protoc like the Bazel rule
# in tools/build_defs/proto.bzl. Regenerated only when the .proto changed.
generate_protos() {
  if [[ ! -f "$GEN/proto/config.pb.cc" || proto/config.proto -nt "$GEN/proto/config.pb.cc" ]]; then
    mkdir -p "$GEN"
    protoc -I. -I/usr/include --cpp_out="$GEN" proto/config.proto
  fi
}

# True when the binary is older than any of its inputs (sources, headers
# beside them, this script, the absl list).
stale() {
  local binary="$1"
  shift
  [[ -f "$binary" ]] || return 0
  local f
  for f in "$@" tools/fuzz.sh third_party/BUILD.bazel; do
    [[ "$f" -nt "$binary" ]] && return 0
    [[ -f "${f%.cc}.h" && "${f%.cc}.h" -nt "$binary" ]] && return 0
  done
  return 1
}

failed=0
mkdir -p "$OUT/crashes"
for spec in "${TARGETS[@]}"; do
  IFS='|' read -r name main others corpus linkflags runflags <<<"$spec"
  if [[ ${#selected[@]} -gt 0 && ! " ${selected[*]} " =~ " $name " ]]; then
    continue
  fi
  read -ra other_srcs <<<"$others"
  read -ra link_flags <<<"$linkflags"
  read -ra run_flags <<<"$runflags"

  if [[ "$name" == config_loader_fuzz ]]; then
    generate_protos
  fi
  binary="$OUT/$name"
  if stale "$binary" "$main" "${other_srcs[@]}"; then
    if ! "$CXX" "${CXXFLAGS[@]}" "$main" "${other_srcs[@]}" -o "$binary.tmp" \
      "${link_flags[@]}" "${ABSL_LIBS[@]}" -lpthread >"$OUT/$name.build.log" 2>&1; then
      echo "fuzz $name: BUILD FAILED (see $OUT/$name.build.log)"
      tail -n 20 "$OUT/$name.build.log" | sed 's/^/  /'
      failed=1
      continue
    fi
    mv "$binary.tmp" "$binary"
  fi
  if [[ $build_only -eq 1 ]]; then
    echo "fuzz $name: built $binary"
    continue
  fi

  work=$(mktemp -d)
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -R "$corpus/." "$work/corpus/"
  bound_flags=()
  [[ -n "$FUZZ_SEED" ]] && bound_flags+=(-seed="$FUZZ_SEED")
  [[ -n "$FUZZ_RUNS" ]] && bound_flags+=(-runs="$FUZZ_RUNS")
  rc=0
  "$binary" "${bound_flags[@]}" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${run_flags[@]}" "$work/corpus" \
    >"$work/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
  crash=$(find "$work/artifacts" -type f | head -n 1)
  if [[ $rc -eq 0 && -z "$crash" ]]; then
    echo "fuzz $name: ok (${runs:-?} runs)"
  else
    failed=1
    cp "$work/log" "$OUT/crashes/$name.log"
    if [[ -n "$crash" ]]; then
      kept="$OUT/crashes/$name-$(basename "$crash")"
      cp "$crash" "$kept"
      echo "fuzz $name: FAILED (exit $rc), crash input: $kept (log: $OUT/crashes/$name.log)"
    else
      echo "fuzz $name: FAILED (exit $rc), no crash input saved (log: $OUT/crashes/$name.log)"
    fi
    grep -E 'ERROR|invariant|SUMMARY|runtime error' "$work/log" | head -n 10 | sed 's/^/  /' || true
  fi
  rm -rf "$work"
done
exit "$failed"
