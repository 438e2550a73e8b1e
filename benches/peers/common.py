"""Helpers shared by the peer engines."""

import datetime
import decimal
import os
import time

TPCH_TABLES = ["region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem"]


def cell(value):
    """A result cell as JSON: decimals and dates as text, like Arrow prints them."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value


def rows(tuples):
    return [[cell(v) for v in row] for row in tuples]


def sql_text(query):
    """One statement without its final semicolon (Spark refuses it)."""
    return query.strip().rstrip(";").strip()


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def iterate(state, iterations, every, step, cut, action):
    """Runs `step` on `state` `iterations` times; every `every`-th result
    goes through `cut` (None: --mode none), and each is followed by
    `action`. Returns the last state and each iteration's seconds."""
    seconds = []
    for i in range(1, iterations + 1):
        with Timer() as t:
            state = step(state)
            if cut is not None and i % every == 0:
                state = cut(state)
            action(state)
        seconds.append(t.seconds)
    return state, seconds


def dir_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
