"""DuckDB (in memory) as a cairn-bench peer."""

import os

import duckdb

from common import TPCH_TABLES, Timer, dir_bytes, rows, sql_text


class Peer:
    def __init__(self):
        self.version = duckdb.__version__
        self.con = duckdb.connect()
        self.runs = 0

    def tpch_load(self, data):
        for t in TPCH_TABLES:
            path = os.path.join(data, t, "*.parquet")
            self.con.execute(f"CREATE OR REPLACE VIEW {t} AS SELECT * FROM read_parquet('{path}')")
        return {}

    def tpch(self, query):
        with Timer() as t:
            result = self.con.execute(sql_text(query)).fetchall()
        return {"seconds": t.seconds, "rows": rows(result)}

    def _loop(self, edges, nodes, iterations, mode, every, init, step):
        """Runs `step` K times; a table (materialized) every `every`-th
        iteration in the checkpoint modes, else a view."""
        self.runs += 1
        p = f"r{self.runs}_"
        con = self.con
        con.execute(f"CREATE TABLE {p}edges AS SELECT * FROM read_parquet('{edges}')")
        con.execute(f"CREATE TABLE {p}s0 AS {init.format(n=nodes)}")
        seconds = []
        for i in range(1, iterations + 1):
            with Timer() as t:
                table = mode != "none" and i % every == 0
                kind = "TABLE" if table else "VIEW"
                con.execute(f"CREATE {kind} {p}s{i} AS {step.format(p=p, prev=f'{p}s{i - 1}')}")
                con.execute(f"SELECT count(*) FROM {p}s{i}").fetchall()
            seconds.append(t.seconds)
        return p, f"{p}s{iterations}", seconds

    def _drop(self, p):
        for (name, kind) in self.con.execute(
            "SELECT table_name, table_type FROM information_schema.tables WHERE table_name LIKE ?",
            [p + "%"],
        ).fetchall()[::-1]:
            self.con.execute(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS {name}")

    def label_propagation(self, edges, nodes, iterations, mode, every, **_):
        init = "SELECT range AS v, range AS l FROM range({n})"
        step = ("SELECT v, least(l, coalesce(m, l)) AS l FROM {prev} LEFT JOIN "
                "(SELECT src, min(nl.l) AS m FROM {p}edges JOIN {prev} nl ON dst = nl.v GROUP BY src) nb "
                "ON v = nb.src")
        p, last, seconds = self._loop(edges, nodes, iterations, mode, every, init, step)
        distinct, total = self.con.execute(f"SELECT count(DISTINCT l), sum(l) FROM {last}").fetchone()
        self._drop(p)
        return {"mode": _mode(mode), "seconds": seconds, "distinct": distinct, "sum": int(total)}

    def pagerank(self, edges, nodes, iterations, mode, every, damping, **_):
        self.con.execute(f"CREATE OR REPLACE TABLE links AS SELECT e.src, e.dst, 1.0::DOUBLE / d.deg AS w "
                         f"FROM read_parquet('{edges}') e JOIN "
                         f"(SELECT src, count(*) AS deg FROM read_parquet('{edges}') GROUP BY src) d USING (src)")
        init = "SELECT range AS v, 1.0::DOUBLE / {n} AS r FROM range({n})"
        base = (1.0 - damping) / nodes
        step = (f"SELECT v, {base!r} + {damping!r} * coalesce(c, 0.0) AS r FROM {{prev}} LEFT JOIN "
                "(SELECT l.dst, sum(x.r * l.w) AS c FROM links l JOIN {prev} x ON l.src = x.v GROUP BY l.dst) c "
                "ON v = c.dst")
        p, last, seconds = self._loop(edges, nodes, iterations, mode, every, init, step)
        ranks = [r for (r,) in self.con.execute(f"SELECT r FROM {last} ORDER BY v").fetchall()]
        self._drop(p)
        return {"mode": _mode(mode), "seconds": seconds, "ranks": ranks}

    def copy_parquet(self, source, target, compression):
        codec = compression.upper()
        level = ""
        if codec.startswith("ZSTD(") and codec.endswith(")"):
            codec, level = "ZSTD", f", COMPRESSION_LEVEL {codec[5:-1]}"
        with Timer() as t:
            self.con.execute(f"COPY (SELECT * FROM read_parquet('{source}/*.parquet')) TO '{target}' "
                             f"(FORMAT parquet, COMPRESSION {codec}{level})")
        return {"seconds": t.seconds, "bytes": dir_bytes(target)}

    def seed(self, **_):
        con = self.con
        con.execute("CREATE OR REPLACE VIEW seed_0 AS SELECT range AS x FROM range(1, 100000)")
        for i in range(1, 11):
            con.execute(f"CREATE OR REPLACE VIEW seed_{i} AS SELECT x + 1 AS x FROM seed_{i - 1}")
        seconds = []
        with Timer() as t:
            con.execute("SELECT sum(x), count(x) FROM seed_10").fetchall()
        seconds.append(t.seconds)
        with Timer() as t:
            con.execute("CREATE OR REPLACE TABLE seed_table AS SELECT * FROM seed_10")
        seconds.append(t.seconds)
        with Timer() as t:
            total, count = con.execute("SELECT sum(x), count(x) FROM seed_table").fetchone()
        seconds.append(t.seconds)
        return {"mode": "CREATE TABLE", "seconds": seconds, "sum": int(total), "count": count}


def _mode(mode):
    return {"none": "views", "checkpoint": "CREATE TABLE", "local": "CREATE TABLE"}[mode]
