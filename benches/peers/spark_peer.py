"""Apache Spark (local mode, every core) as a cairn-bench peer: checkpoint()
for --mode checkpoint, localCheckpoint() for --mode local."""

import os
import tempfile

import pyspark
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common import TPCH_TABLES, Timer, iterate, rows, sql_text


class Peer:
    def __init__(self):
        self.version = pyspark.__version__
        cores = os.cpu_count() or 2
        self.spark = (SparkSession.builder.master(f"local[{cores}]")
                      .config("spark.ui.enabled", "false")
                      .config("spark.ui.showConsoleProgress", "false")
                      .config("spark.sql.shuffle.partitions", str(cores * 2))
                      .config("spark.driver.memory", "4g")
                      .getOrCreate())
        self.spark.sparkContext.setLogLevel("ERROR")
        self.spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="cairn-bench-spark-"))

    def close(self):
        self.spark.stop()

    def tpch_load(self, data):
        for t in TPCH_TABLES:
            self.spark.read.parquet(os.path.join(data, t)).createOrReplaceTempView(t)
        return {}

    def tpch(self, query):
        with Timer() as t:
            result = self.spark.sql(sql_text(query)).collect()
        return {"seconds": t.seconds, "rows": rows(tuple(r) for r in result)}

    def _edges(self, edges):
        e = self.spark.read.parquet(edges).cache()
        e.count()
        return e

    def label_propagation(self, edges, nodes, iterations, mode, every, **_):
        e = self._edges(edges)
        labels = self.spark.range(nodes).select(F.col("id").alias("v"), F.col("id").alias("l"))

        def step(labels):
            nb = (e.join(labels.select(F.col("v").alias("nv"), F.col("l").alias("nl")), F.col("dst") == F.col("nv"))
                  .groupBy("src").agg(F.min("nl").alias("m")))
            return (labels.join(nb, labels.v == nb.src, "left")
                    .select("v", F.least(F.col("l"), F.coalesce(F.col("m"), F.col("l"))).alias("l")))

        labels, seconds = iterate(labels, iterations, every, step, _cut(mode), _count)
        out = labels.agg(F.countDistinct("l").alias("d"), F.sum("l").alias("s")).collect()[0]
        e.unpersist()
        return {"mode": _mode(mode), "seconds": seconds, "distinct": out["d"], "sum": out["s"]}

    def pagerank(self, edges, nodes, iterations, mode, every, damping, **_):
        e = self._edges(edges)
        deg = e.groupBy("src").agg(F.count(F.lit(1)).alias("deg")).select(
            F.col("src").alias("s"), (F.lit(1.0) / F.col("deg").cast("double")).alias("w"))
        links = e.join(deg, e.src == deg.s).select("src", "dst", "w").cache()
        links.count()
        ranks = self.spark.range(nodes).select(F.col("id").alias("v"), F.lit(1.0 / nodes).alias("r"))
        base = (1.0 - damping) / nodes

        def step(ranks):
            c = (links.join(ranks.select(F.col("v").alias("rv"), F.col("r").alias("rr")), F.col("src") == F.col("rv"))
                 .groupBy("dst").agg(F.sum(F.col("rr") * F.col("w")).alias("c")))
            return (ranks.join(c, ranks.v == c.dst, "left")
                    .select("v", (F.lit(base) + F.lit(damping) * F.coalesce(F.col("c"), F.lit(0.0))).alias("r")))

        ranks, seconds = iterate(ranks, iterations, every, step, _cut(mode), _count)
        values = [r["r"] for r in ranks.orderBy("v").collect()]
        links.unpersist()
        e.unpersist()
        return {"mode": _mode(mode), "seconds": seconds, "ranks": values}

    def seed(self, **_):
        df = self.spark.range(1, 100000).toDF("x")
        for _ in range(10):
            df = df.withColumn("x", F.col("x") + 1)
        agg = [F.sum("x").alias("s"), F.count("x").alias("c")]
        seconds = []
        with Timer() as t:
            df.agg(*agg).collect()
        seconds.append(t.seconds)
        with Timer() as t:
            df = df.checkpoint(eager=True)
        seconds.append(t.seconds)
        with Timer() as t:
            out = df.agg(*agg).collect()[0]
        seconds.append(t.seconds)
        return {"mode": "checkpoint", "seconds": seconds, "sum": out["s"], "count": out["c"]}


def _cut(mode):
    if mode == "checkpoint":
        return lambda df: df.checkpoint(eager=True)
    if mode == "local":
        return lambda df: df.localCheckpoint(eager=True)
    return None


def _count(df):
    df.count()


def _mode(mode):
    return {"none": "lazy", "checkpoint": "checkpoint()", "local": "localCheckpoint()"}[mode]
