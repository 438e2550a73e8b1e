#!/usr/bin/env bash
# The long robustness runs, outside CI (see README.md, "Long runs"):
# hundreds of SIGKILLs, dozens of two-process commit races, thousands of
# differential queries against DuckDB, checkpoints ten times the memory
# limit, and the fuzz targets. Each step prints its own summary; the script stops at the first
# failure.
#
#   bash tests/long/run.sh                 # everything, defaults below
#   KILLS=50 QUERIES=1000 bash tests/long/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

KILLS="${KILLS:-200}"
RACES="${RACES:-50}"
QUERIES="${QUERIES:-10000}"
SEED="${SEED:-$RANDOM$RANDOM}"
GB="${GB:-5}"
LIMIT_MB="${LIMIT_MB:-512}"
FUZZ_SECONDS="${FUZZ_SECONDS:-600}"
S3_RACES="${S3_RACES:-20}"
S3_KILLS="${S3_KILLS:-50}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"

venv="${CAIRN_VENV:-$HOME/.cache/cairn-py}"
if ! "$venv/bin/python" -c "import duckdb, moto.server, boto3" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb 'moto[server]' boto3
fi
export CAIRN_PYTHON="$venv/bin/python" CAIRN_REQUIRE_DUCKDB=1

step() { printf '\n== %s\n' "$*"; }

step "SIGKILL at $KILLS random moments"
CAIRN_KILLS="$KILLS" cargo test --test integration atomicity -- --nocapture 2>&1 |
    grep -E "seed|killed before|test result"

step "$RACES two-process commit races"
CAIRN_RACES="$RACES" cargo test --test integration races -- --nocapture 2>&1 |
    grep -E "races had|test result"

step "$QUERIES differential queries, seed $SEED"
CAIRN_DIFF_QUERIES="$QUERIES" CAIRN_DIFF_SEED="$SEED" \
    cargo test --test integration differential -- --nocapture 2>&1 |
    grep -E "^query|^  |queries \(|test result" || true

step "checkpoints of $GB GB through a $LIMIT_MB MB memory pool"
cargo build --release --example big_checkpoint
for kind in reliable local; do
    "$CARGO_TARGET_DIR/release/examples/big_checkpoint" "$GB" "$LIMIT_MB" "$kind"
done

step "S3 (moto): conditional-put race check, $S3_RACES commit races, $S3_KILLS SIGKILLs"
# shellcheck source=tests/s3/start.sh
source tests/s3/start.sh "$venv/bin/python"
"$venv/bin/python" tests/s3/conditional_put_race.py 500 8
CAIRN_REQUIRE_S3=1 CAIRN_S3_RACES="$S3_RACES" CAIRN_S3_KILLS="$S3_KILLS" \
    cargo test --test integration s3:: -- --nocapture 2>&1 |
    grep -E "races had|killed before|test result"
kill "$s3_pid"

step "fuzzing, $FUZZ_SECONDS s per target"
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    # Its own workspace and target dir (fuzz/target): sanitizer builds share
    # nothing with the others. The first build takes about 35 minutes.
    cd fuzz
    for target in statement_parser manifest_reader manifest_schema plan_decoder; do
        mkdir -p "corpus/$target"
        env -u CARGO_TARGET_DIR cargo +nightly fuzz run -a "$target" \
            "corpus/$target" "seeds/$target" -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=1 2>&1 |
            grep -E "^stat::number_of_executed_units|^Done|ERROR|panicked" || true
    done
    cd ..
else
    echo "skipped: needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked)"
fi
