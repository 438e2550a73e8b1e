"""Sail (LakeSail's Spark Connect server on DataFusion) as a cairn-bench
peer: the Spark peer's jobs, sent through PySpark Connect to a
`sail spark server` this peer starts on a free local port and stops at exit.
checkpoint(eager=True) for --mode checkpoint (Parquet under a temporary
SAIL_EXECUTION__CHECKPOINT__PATH), localCheckpoint() for --mode local.

Sail needs its own Python environment: pysail 0.7 accepts pyspark[connect]
4.0.x only. cairn-bench runs this peer with $CAIRN_BENCH_SAIL_PYTHON."""

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pysail
from pyspark.sql import SparkSession

import spark_peer


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port, server, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"sail spark server exited with status {server.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sail spark server did not listen on port {port} within {seconds} s")


class Peer(spark_peer.Peer):
    def __init__(self):
        self.version = pysail.__version__
        self.checkpoints = tempfile.mkdtemp(prefix="cairn-bench-sail-")
        port = _free_port()
        env = dict(os.environ)
        env["SAIL_EXECUTION__CHECKPOINT__PATH"] = "file://" + self.checkpoints
        # The server's log goes to our stderr, which cairn-bench shows.
        self.server = subprocess.Popen(
            [sys.executable, "-m", "pysail", "spark", "server", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL)
        atexit.register(self.close)
        _wait_for(port, self.server)
        self.spark = SparkSession.builder.remote(f"sc://127.0.0.1:{port}").getOrCreate()

    def close(self):
        if self.server.poll() is None:
            try:
                self.spark.stop()
            except Exception:  # the server may be gone already
                pass
            self.server.terminate()
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.server.kill()
        shutil.rmtree(self.checkpoints, ignore_errors=True)
