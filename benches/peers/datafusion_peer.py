"""DataFusion's Python bindings as a cairn-bench peer (cache() to cut the plan)."""

import os

import datafusion
import pyarrow as pa
from datafusion import SessionContext, col, lit
from datafusion import functions as f

from common import TPCH_TABLES, Timer, iterate, rows, sql_text


class Peer:
    def __init__(self):
        self.version = datafusion.__version__
        self.ctx = SessionContext()

    def tpch_load(self, data):
        for t in TPCH_TABLES:
            self.ctx.deregister_table(t) if self.ctx.table_exist(t) else None
            self.ctx.register_parquet(t, os.path.join(data, t) + "/")
        return {}

    def tpch(self, query):
        with Timer() as t:
            batches = self.ctx.sql(sql_text(query)).collect()
        table = pa.Table.from_batches(batches) if batches else None
        result = [tuple(r.values()) for r in table.to_pylist()] if table is not None else []
        return {"seconds": t.seconds, "rows": rows(result)}

    def label_propagation(self, edges, nodes, iterations, mode, every, **_):
        e = self.ctx.read_parquet(edges).cache()
        labels = self.ctx.sql(f"SELECT value AS v, value AS l FROM range(0, {nodes})")

        def step(labels):
            nb = (e.join(labels.select(col("v").alias("nv"), col("l").alias("nl")), left_on=["dst"], right_on=["nv"])
                  .aggregate([col("src")], [f.min(col("nl")).alias("m")]))
            return (labels.join(nb, left_on=["v"], right_on=["src"], how="left")
                    .select(col("v"), f.least(col("l"), f.coalesce(col("m"), col("l"))).alias("l")))

        labels, seconds = iterate(labels, iterations, every, step, _cut(mode), _count)
        out = labels.aggregate([], [f.count(col("l"), distinct=True).alias("d"), f.sum(col("l")).alias("s")]).to_pylist()[0]
        return {"mode": _mode(mode), "seconds": seconds, "distinct": out["d"], "sum": out["s"]}

    def pagerank(self, edges, nodes, iterations, mode, every, damping, **_):
        e = self.ctx.read_parquet(edges)
        deg = e.aggregate([col("src")], [f.count(lit(1)).alias("deg")]).select(
            col("src").alias("s"), (lit(1.0) / col("deg").cast(pa.float64())).alias("w"))
        links = e.join(deg, left_on=["src"], right_on=["s"]).select(col("src"), col("dst"), col("w")).cache()
        ranks = self.ctx.sql(f"SELECT value AS v, CAST(1.0 AS DOUBLE) / {nodes} AS r FROM range(0, {nodes})")
        base = (1.0 - damping) / nodes

        def step(ranks):
            c = (links.join(ranks.select(col("v").alias("rv"), col("r").alias("rr")), left_on=["src"], right_on=["rv"])
                 .aggregate([col("dst")], [f.sum(col("rr") * col("w")).alias("c")]))
            return (ranks.join(c, left_on=["v"], right_on=["dst"], how="left")
                    .select(col("v"), (lit(base) + lit(damping) * f.coalesce(col("c"), lit(0.0))).alias("r")))

        ranks, seconds = iterate(ranks, iterations, every, step, _cut(mode), _count)
        values = [r["r"] for r in ranks.sort(col("v").sort()).to_pylist()]
        return {"mode": _mode(mode), "seconds": seconds, "ranks": values}

    def seed(self, **_):
        df = self.ctx.sql("SELECT value AS x FROM range(1, 100000)")
        for _ in range(10):
            df = df.select((col("x") + lit(1)).alias("x"))
        agg = [f.sum(col("x")).alias("s"), f.count(col("x")).alias("c")]
        seconds = []
        with Timer() as t:
            df.aggregate([], agg).collect()
        seconds.append(t.seconds)
        with Timer() as t:
            df = df.cache()
        seconds.append(t.seconds)
        with Timer() as t:
            out = df.aggregate([], agg).to_pylist()[0]
        seconds.append(t.seconds)
        return {"mode": "cache", "seconds": seconds, "sum": out["s"], "count": out["c"]}


def _cut(mode):
    return None if mode == "none" else (lambda df: df.cache())


def _count(df):
    df.count()


def _mode(mode):
    return {"none": "lazy", "checkpoint": "cache", "local": "cache"}[mode]
