"""A peer engine for cairn-bench, driven over stdin/stdout.

Usage: python3 peer.py ENGINE   (duckdb | polars | datafusion-python | spark | sail)

One JSON object per line each way. The first line out is {"ready": true,
"version": ...}, or {"error": ...} when the engine cannot be imported. Then
each request {"op": NAME, ...args} gets one reply; {"error": ...} if the op
failed or the engine does not run it. Ops: tpch_load, tpch, label_propagation,
pagerank, copy_parquet, seed (see the engine modules next to this file).
"""

import importlib
import json
import os
import sys
import traceback

MODULES = {
    "duckdb": "duckdb_peer",
    "polars": "polars_peer",
    "datafusion-python": "datafusion_peer",
    "spark": "spark_peer",
    "sail": "sail_peer",
}


def main():
    # Keep the protocol on a private copy of stdout: engines (the JVM under
    # Spark, native libraries) may print to fd 1, which now goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    engine = sys.argv[1] if len(sys.argv) > 1 else ""
    if engine not in MODULES:
        reply({"error": f"unknown engine {engine!r}; choose from {', '.join(MODULES)}"})
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        module = importlib.import_module(MODULES[engine])
        peer = module.Peer()
    except ImportError as e:
        reply({"error": f"not installed for {sys.executable} ({e}); "
                        f"pip install {module_package(engine)}"})
        return
    reply({"ready": True, "version": peer.version})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.pop("op", "")
        handler = getattr(peer, op, None)
        if handler is None or op.startswith("_"):
            reply({"error": f"{engine} does not run {op!r} here"})
            continue
        try:
            reply(handler(**request))
        except Exception as e:  # report and keep serving
            traceback.print_exc(file=sys.stderr)
            reply({"error": f"{type(e).__name__}: {e}".strip()})


def module_package(engine):
    return {"datafusion-python": "datafusion pyarrow", "spark": "pyspark",
            "sail": "pysail==0.7.2 'pyspark[connect]>=4.0,<4.1'"}.get(engine, engine)


if __name__ == "__main__":
    main()
