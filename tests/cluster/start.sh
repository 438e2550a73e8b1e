# Sourced by .ci/run with the built binaries' dir as $1: starts a Cairn
# cluster on 127.0.0.1 (cairn-scheduler and two cairn-executors on free
# ports, executors lost after 4 s of silence), waits until each listens,
# exports CAIRN_TEST_CLUSTER=df://127.0.0.1:PORT, and stops them when the
# calling script exits (after whatever that script stops itself).
cluster_bin="$1"
cluster_log="$(mktemp -d)"
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    echo "nothing listens on port $1; logs:"
    tail -n 20 "$cluster_log"/*
    exit 1
}
scheduler_port="$(free_port)"
# Servers read S3 secrets from their environment (clients never send them).
export AWS_SECRET_ACCESS_KEY="${CAIRN_TEST_S3_SECRET_ACCESS_KEY:-${AWS_SECRET_ACCESS_KEY:-}}"
"$cluster_bin/cairn-scheduler" --bind-host 127.0.0.1 --bind-port "$scheduler_port" \
    --executor-timeout-seconds 4 --expire-dead-executor-interval-seconds 1 \
    > "$cluster_log/scheduler.log" 2>&1 &
cluster_pids="$!"
wait_port "$scheduler_port"
for n in 1 2; do
    flight_port="$(free_port)"
    "$cluster_bin/cairn-executor" --bind-host 127.0.0.1 --external-host 127.0.0.1 \
        --scheduler-host 127.0.0.1 --scheduler-port "$scheduler_port" \
        --bind-port "$flight_port" --bind-grpc-port "$(free_port)" --concurrent-tasks 2 \
        > "$cluster_log/executor-$n.log" 2>&1 &
    cluster_pids="$cluster_pids $!"
    wait_port "$flight_port"
done
previous_trap="$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")"
# shellcheck disable=SC2064
trap "kill $cluster_pids 2>/dev/null || true; $previous_trap" EXIT
export CAIRN_TEST_CLUSTER="df://127.0.0.1:$scheduler_port"
