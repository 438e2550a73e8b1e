# Sourced by .ci/run and tests/long/run.sh with the venv's python as $1:
# starts moto's S3 server (moto_server.py), waits until it is ready, exports
# its CAIRN_TEST_S3_* settings, and stops it when the calling script exits.
s3_env="$(mktemp -u)"
"$1" tests/s3/moto_server.py "$s3_env" > "${s3_env}.log" 2>&1 &
s3_pid=$!
trap 'kill $s3_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    [ -f "$s3_env" ] && break
    kill -0 $s3_pid 2>/dev/null || break
    sleep 0.5
done
if [ ! -f "$s3_env" ]; then
    echo "the S3 test server did not start:"
    cat "${s3_env}.log"
    exit 1
fi
# shellcheck disable=SC1090
source "$s3_env"
