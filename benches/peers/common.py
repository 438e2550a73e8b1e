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


def dir_bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
