#!/usr/bin/env bash
# The full test suite, set-up included: what the README's test command runs and what CI
# runs. Privileged tests must run: EBPF_TOOL_REQUIRE_PRIVILEGED=1 turns a skip for lack
# of root into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
EBPF_TOOL_REQUIRE_PRIVILEGED=1 cargo test "$@"
