"""Polars (lazy frames, collected to cut the plan) as a cairn-bench peer.
Polars has no SQL for all of TPC-H, so it runs the iterative jobs and seed."""

import polars as pl

from common import Timer, iterate


class Peer:
    def __init__(self):
        self.version = pl.__version__

    def label_propagation(self, edges, nodes, iterations, mode, every, **_):
        e = pl.read_parquet(edges).lazy()
        labels = pl.DataFrame({"v": range(nodes), "l": range(nodes)}, schema={"v": pl.Int64, "l": pl.Int64}).lazy()

        def step(labels):
            nb = (e.join(labels.rename({"v": "nv", "l": "nl"}), left_on="dst", right_on="nv")
                  .group_by("src").agg(pl.col("nl").min().alias("m")))
            return (labels.join(nb, left_on="v", right_on="src", how="left")
                    .select("v", pl.min_horizontal("l", pl.coalesce("m", "l")).alias("l")))

        labels, seconds = iterate(labels, iterations, every, step, _cut(mode), _count)
        out = labels.select(pl.col("l").n_unique().alias("d"), pl.col("l").sum().alias("s")).collect()
        return {"mode": _mode(mode), "seconds": seconds, "distinct": out["d"][0], "sum": out["s"][0]}

    def pagerank(self, edges, nodes, iterations, mode, every, damping, **_):
        e = pl.read_parquet(edges).lazy()
        links = (e.join(e.group_by("src").agg(pl.len().alias("deg")), on="src")
                 .select("src", "dst", (1.0 / pl.col("deg").cast(pl.Float64)).alias("w"))
                 .collect().lazy())
        ranks = pl.DataFrame({"v": range(nodes), "r": [1.0 / nodes] * nodes},
                             schema={"v": pl.Int64, "r": pl.Float64}).lazy()
        base = (1.0 - damping) / nodes

        def step(ranks):
            c = (links.join(ranks.rename({"v": "rv", "r": "rr"}), left_on="src", right_on="rv")
                 .group_by("dst").agg((pl.col("rr") * pl.col("w")).sum().alias("c")))
            return (ranks.join(c, left_on="v", right_on="dst", how="left")
                    .select("v", (base + damping * pl.col("c").fill_null(0.0)).alias("r")))

        ranks, seconds = iterate(ranks, iterations, every, step, _cut(mode), _count)
        values = ranks.sort("v").collect()["r"].to_list()
        return {"mode": _mode(mode), "seconds": seconds, "ranks": values}

    def seed(self, **_):
        df = pl.DataFrame({"x": range(1, 100000)}, schema={"x": pl.Int64}).lazy()
        for _ in range(10):
            df = df.select((pl.col("x") + 1).alias("x"))
        agg = [pl.col("x").sum().alias("s"), pl.col("x").count().alias("c")]
        seconds = []
        with Timer() as t:
            df.select(agg).collect()
        seconds.append(t.seconds)
        with Timer() as t:
            df = df.collect().lazy()
        seconds.append(t.seconds)
        with Timer() as t:
            out = df.select(agg).collect()
        seconds.append(t.seconds)
        return {"mode": "collect", "seconds": seconds, "sum": out["s"][0], "count": out["c"][0]}


def _cut(mode):
    return None if mode == "none" else (lambda df: df.collect().lazy())


def _count(df):
    df.select(pl.len()).collect()


def _mode(mode):
    return {"none": "lazy", "checkpoint": "collect", "local": "collect"}[mode]
