#!/usr/bin/env bash
# Builds Postern and runs one node in the foreground. Without arguments it
# uses the embedded defaults (data in ./var/postern, SMTP on 127.0.0.1:2525,
# 2587, 2465, metrics on 127.0.0.1:9464). Extra arguments go to posternd,
# e.g. tools/run.sh --config /etc/postern/postern.yaml
# Ctrl-C drains and stops the node.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh --build-only
bazel build //cmd/posternd //cmd/postern-worker //cmd/posternctl //cmd/postern-spool
exec bazel-bin/cmd/posternd/posternd "$@"
