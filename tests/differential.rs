//! Differential testing: random but valid queries (joins, aggregates,
//! subqueries, nested projections, window functions, NULLs) over small
//! generated tables, each run three ways and compared as multisets with a
//! float tolerance:
//!
//! 1. on DuckDB (Python's `duckdb`, via `tests/differential/duckdb_runner.py`),
//! 2. on Cairn,
//! 3. on Cairn with `CHECKPOINT(...)` placed at random points of the query.
//!
//! `CAIRN_DIFF_QUERIES` (default 300) and `CAIRN_DIFF_SEED` (default fixed)
//! choose the run; `CAIRN_PYTHON` names a Python with `duckdb` (default
//! `python3`). Without DuckDB the first comparison is skipped with a note,
//! unless `CAIRN_REQUIRE_DUCKDB=1` (as in CI), which makes that a failure.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use cairn::Session;
use cairn::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use cairn::arrow::compute::cast;
use cairn::arrow::datatypes::{DataType, Field, Schema};
use cairn::datafusion::dataframe::DataFrameWriteOptions;
use cairn::datafusion::prelude::SessionContext;

use crate::common::{env_or, on_big_stack};

const TABLES: usize = 3;

/// A small deterministic generator (xorshift64*).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as usize) as i64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Int,
    Float,
    Str,
}

#[derive(Debug, Clone)]
struct Col {
    /// `alias.name`, ready to use in SQL.
    sql: String,
    ty: Ty,
}

/// The tables every query reads: `t0` .. `t2` with columns k, a, b (BIGINT;
/// b never NULL), c (DOUBLE, multiples of 0.25 so that sums are exact) and
/// s (VARCHAR).
fn tables(rng: &mut Rng) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Int64, false),
        Field::new("c", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    (0..TABLES)
        .map(|_| {
            let n = 12 + rng.below(20);
            let mut k = Vec::new();
            let mut a = Vec::new();
            let mut b = Vec::new();
            let mut c = Vec::new();
            let mut s = Vec::new();
            for _ in 0..n {
                k.push((!rng.chance(10)).then(|| rng.range(0, 4)));
                a.push((!rng.chance(15)).then(|| rng.range(-5, 5)));
                b.push(rng.range(0, 100));
                c.push((!rng.chance(15)).then(|| rng.range(-20, 20) as f64 * 0.25));
                s.push(
                    (!rng.chance(15))
                        .then(|| rng.pick(&["x", "y", "z", "xy", "", "Y"]).to_string()),
                );
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(k)),
                Arc::new(Int64Array::from(a)),
                Arc::new(Int64Array::from(b)),
                Arc::new(Float64Array::from(c)),
                Arc::new(StringArray::from(s)),
            ];
            RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
        })
        .collect()
}

/// Writes the generated tables to `dir` as `t0.parquet` .. and registers
/// them in `ctx` under those names: what every engine of a run reads.
pub(crate) async fn register_tables(ctx: &SessionContext, dir: &Path, rng: &mut Rng) {
    for (i, batch) in tables(rng).into_iter().enumerate() {
        let path = dir.join(format!("t{i}.parquet"));
        ctx.read_batch(batch)
            .unwrap()
            .write_parquet(
                path.to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .unwrap();
        ctx.register_parquet(format!("t{i}"), path.to_str().unwrap(), Default::default())
            .await
            .unwrap();
    }
}

/// Writes queries with checkpoint markers: `⟦q⟧` is `CHECKPOINT(q)` for
/// Cairn and `(q)` for the plain versions.
struct QueryGen {
    rng: Rng,
    aliases: usize,
}

const MAX_DEPTH: usize = 3;

impl QueryGen {
    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("r{}", self.aliases)
    }

    /// A top-level query, sometimes ordered and limited.
    fn top(&mut self) -> String {
        let (mut sql, cols) = self.query(0);
        if self.rng.chance(20) {
            let order: Vec<String> = (0..cols.len())
                .map(|i| {
                    let dir = self.rng.pick(&["ASC NULLS LAST", "DESC NULLS FIRST"]);
                    format!("c{i} {dir}")
                })
                .collect();
            let limit = 1 + self.rng.below(8);
            sql = format!(
                "SELECT * FROM ({sql}) AS ordered ORDER BY {} LIMIT {limit}",
                order.join(", ")
            );
        }
        sql
    }

    /// A query whose output columns are `c0, c1, ...`.
    fn query(&mut self, depth: usize) -> (String, Vec<Ty>) {
        let (from, cols) = self.relation(depth);
        match self.rng.below(100) {
            0..45 => self.projection(&from, &cols, depth),
            45..78 => self.aggregation(&from, &cols, depth),
            _ => self.window(&from, &cols, depth),
        }
    }

    fn projection(&mut self, from: &str, cols: &[Col], depth: usize) -> (String, Vec<Ty>) {
        let n = 1 + self.rng.below(4);
        let mut items = Vec::new();
        let mut types = Vec::new();
        for i in 0..n {
            let ty = *self.rng.pick(&[Ty::Int, Ty::Int, Ty::Float, Ty::Str]);
            items.push(format!("{} AS c{i}", self.expr(ty, cols, depth, 0)));
            types.push(ty);
        }
        let distinct = if self.rng.chance(15) { "DISTINCT " } else { "" };
        let mut sql = format!("SELECT {distinct}{} FROM {from}", items.join(", "));
        if self.rng.chance(60) {
            write!(sql, " WHERE {}", self.predicate(cols, depth, 0)).unwrap();
        }
        (sql, types)
    }

    fn aggregation(&mut self, from: &str, cols: &[Col], depth: usize) -> (String, Vec<Ty>) {
        let keys: Vec<(String, Ty)> = (0..self.rng.below(3))
            .map(|_| {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Str, Ty::Int]);
                (self.expr(ty, cols, depth, 1), ty)
            })
            .collect();
        let mut items: Vec<String> = Vec::new();
        let mut types = Vec::new();
        for (key, ty) in &keys {
            items.push(format!("{key} AS c{}", items.len()));
            types.push(*ty);
        }
        for _ in 0..1 + self.rng.below(3) {
            let (agg, ty) = self.aggregate(cols, depth);
            items.push(format!("{agg} AS c{}", items.len()));
            types.push(ty);
        }
        let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
        if self.rng.chance(40) {
            write!(sql, " WHERE {}", self.predicate(cols, depth, 0)).unwrap();
        }
        if !keys.is_empty() {
            let group: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
            write!(sql, " GROUP BY {}", group.join(", ")).unwrap();
            if self.rng.chance(25) {
                write!(sql, " HAVING count(*) > {}", self.rng.below(3)).unwrap();
            }
        }
        (sql, types)
    }

    fn aggregate(&mut self, cols: &[Col], depth: usize) -> (String, Ty) {
        match self.rng.below(8) {
            0 => ("count(*)".into(), Ty::Int),
            1 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Float, Ty::Str]);
                (format!("count({})", self.expr(ty, cols, depth, 1)), Ty::Int)
            }
            2 => (
                format!("sum({})", self.expr(Ty::Int, cols, depth, 1)),
                Ty::Int,
            ),
            3 => (
                format!("sum({})", self.expr(Ty::Float, cols, depth, 1)),
                Ty::Float,
            ),
            4 | 5 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Float, Ty::Str]);
                let f = self.rng.pick(&["min", "max"]);
                (format!("{f}({})", self.expr(ty, cols, depth, 1)), ty)
            }
            6 => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Float]);
                (format!("avg({})", self.expr(ty, cols, depth, 1)), Ty::Float)
            }
            _ => {
                let ty = *self.rng.pick(&[Ty::Int, Ty::Str]);
                let e = self.expr(ty, cols, depth, 1);
                (format!("count(DISTINCT {e})"), Ty::Int)
            }
        }
    }

    fn window(&mut self, from: &str, cols: &[Col], depth: usize) -> (String, Vec<Ty>) {
        let mut items = Vec::new();
        let mut types = Vec::new();
        let plain = self.rng.pick(&[Ty::Int, Ty::Str, Ty::Float]).to_owned();
        items.push(format!("{} AS c0", self.expr(plain, cols, depth, 1)));
        types.push(plain);
        for _ in 0..1 + self.rng.below(2) {
            let (key_ty, order_ty) = (
                *self.rng.pick(&[Ty::Int, Ty::Str]),
                *self.rng.pick(&[Ty::Int, Ty::Float]),
            );
            let key = self.expr(key_ty, cols, depth, 2);
            let order = self.expr(order_ty, cols, depth, 2);
            let dir = self.rng.pick(&["ASC NULLS FIRST", "DESC NULLS LAST"]);
            let (call, over, ty) = match self.rng.below(5) {
                0 => (
                    "count(*)".to_string(),
                    format!("PARTITION BY {key}"),
                    Ty::Int,
                ),
                1 => (
                    format!("sum({})", self.expr(Ty::Int, cols, depth, 1)),
                    format!("PARTITION BY {key}"),
                    Ty::Int,
                ),
                // rank() is UInt64 in DataFusion (BIGINT in DuckDB): cast, or
                // subtracting two ranks wraps around (a known difference).
                2 => (
                    "rank()".to_string(),
                    format!("PARTITION BY {key} ORDER BY {order} {dir}"),
                    Ty::Int,
                ),
                3 => (
                    format!("sum({})", self.expr(Ty::Int, cols, depth, 1)),
                    format!("PARTITION BY {key} ORDER BY {order} {dir}"),
                    Ty::Int,
                ),
                _ => (
                    format!("max({})", self.expr(Ty::Float, cols, depth, 1)),
                    format!("ORDER BY {order} {dir}"),
                    Ty::Float,
                ),
            };
            let mut window = format!("{call} OVER ({over})");
            if call == "rank()" {
                window = format!("CAST({window} AS BIGINT)");
            }
            items.push(format!("{window} AS c{}", items.len()));
            types.push(ty);
        }
        let mut sql = format!("SELECT {} FROM {from}", items.join(", "));
        if self.rng.chance(30) {
            write!(sql, " WHERE {}", self.predicate(cols, depth, 0)).unwrap();
        }
        (sql, types)
    }

    /// A FROM item and the columns it offers.
    fn relation(&mut self, depth: usize) -> (String, Vec<Col>) {
        let (sql, cols, _) = self.join_or_relation(depth);
        (sql, cols)
    }

    /// A FROM item, its columns and whether it is a join (which must be
    /// parenthesized on the right of another join).
    fn join_or_relation(&mut self, depth: usize) -> (String, Vec<Col>, bool) {
        let deeper = depth < MAX_DEPTH;
        match self.rng.below(100) {
            r if r < 30 && deeper => {
                let (left, mut lcols) = self.relation(depth + 1);
                let (right, rcols, nested) = self.join_or_relation(depth + 1);
                let right = if nested { format!("({right})") } else { right };
                let ty = *self.rng.pick(&[Ty::Int, Ty::Int, Ty::Str]);
                let on = match (
                    lcols.iter().filter(|c| c.ty == ty).collect::<Vec<_>>(),
                    rcols.iter().filter(|c| c.ty == ty).collect::<Vec<_>>(),
                ) {
                    (l, r) if !l.is_empty() && !r.is_empty() => {
                        let (l, r) = (self.rng.pick(&l).sql.clone(), self.rng.pick(&r).sql.clone());
                        format!("{l} = {r}")
                    }
                    _ => "TRUE".to_string(),
                };
                let kind = self
                    .rng
                    .pick(&["JOIN", "JOIN", "LEFT JOIN", "RIGHT JOIN", "FULL JOIN"]);
                lcols.extend(rcols);
                (format!("{left} {kind} {right} ON {on}"), lcols, true)
            }
            r if r < 60 && deeper => {
                let (sql, types) = self.query(depth + 1);
                let alias = self.alias();
                let cols = types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| Col {
                        sql: format!("{alias}.c{i}"),
                        ty: *ty,
                    })
                    .collect();
                let wrapped = if self.rng.chance(35) {
                    format!("⟦{sql}⟧")
                } else {
                    format!("({sql})")
                };
                (format!("{wrapped} AS {alias}"), cols, false)
            }
            _ => {
                let table = format!("t{}", self.rng.below(TABLES));
                let alias = self.alias();
                let cols = [
                    ("k", Ty::Int),
                    ("a", Ty::Int),
                    ("b", Ty::Int),
                    ("c", Ty::Float),
                    ("s", Ty::Str),
                ]
                .iter()
                .map(|(name, ty)| Col {
                    sql: format!("{alias}.{name}"),
                    ty: *ty,
                })
                .collect();
                let from = if self.rng.chance(20) {
                    format!("⟦SELECT * FROM {table}⟧ AS {alias}")
                } else {
                    format!("{table} AS {alias}")
                };
                (from, cols, false)
            }
        }
    }

    /// An expression of type `ty` over `cols`.
    fn expr(&mut self, ty: Ty, cols: &[Col], depth: usize, nesting: usize) -> String {
        let of_type: Vec<&Col> = cols.iter().filter(|c| c.ty == ty).collect();
        let leaf = nesting >= 2 || self.rng.chance(45);
        if leaf || of_type.is_empty() && self.rng.chance(50) {
            if !of_type.is_empty() && self.rng.chance(80) {
                return self.rng.pick(&of_type).sql.clone();
            }
            return self.literal(ty);
        }
        let n = nesting + 1;
        match ty {
            Ty::Int => match self.rng.below(8) {
                0 => format!(
                    "({} + {})",
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
                1 => format!(
                    "({} - {})",
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
                2 => format!("({} * {})", self.expr(ty, cols, depth, n), self.literal(ty)),
                3 => format!("abs({})", self.expr(ty, cols, depth, n)),
                4 => format!(
                    "COALESCE({}, {})",
                    self.expr(ty, cols, depth, n),
                    self.literal(ty)
                ),
                5 => format!("length({})", self.expr(Ty::Str, cols, depth, n)),
                6 => format!(
                    "({} % {})",
                    self.expr(ty, cols, depth, n),
                    self.rng.range(2, 5)
                ),
                _ => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.predicate(cols, depth, n),
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
            },
            Ty::Float => match self.rng.below(5) {
                0 => format!(
                    "({} + {})",
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
                1 => format!("({} * 0.5)", self.expr(ty, cols, depth, n)),
                2 => format!("CAST({} AS DOUBLE)", self.expr(Ty::Int, cols, depth, n)),
                3 => format!(
                    "COALESCE({}, {})",
                    self.expr(ty, cols, depth, n),
                    self.literal(ty)
                ),
                _ => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.predicate(cols, depth, n),
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
            },
            Ty::Str => match self.rng.below(5) {
                0 => format!("upper({})", self.expr(ty, cols, depth, n)),
                1 => format!(
                    "({} || {})",
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
                2 => format!("substr({}, 1, 1)", self.expr(ty, cols, depth, n)),
                3 => format!(
                    "COALESCE({}, {})",
                    self.expr(ty, cols, depth, n),
                    self.literal(ty)
                ),
                _ => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.predicate(cols, depth, n),
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                ),
            },
        }
    }

    fn literal(&mut self, ty: Ty) -> String {
        match ty {
            Ty::Int => self.rng.range(-3, 6).to_string(),
            Ty::Float => format!("{:.2}", self.rng.range(-8, 8) as f64 * 0.25),
            Ty::Str => format!("'{}'", self.rng.pick(&["x", "y", "xy", "", "Y"])),
        }
    }

    /// A condition over `cols`. Only at the top of a WHERE clause (nesting
    /// 0, and the conjuncts of an AND there) may it hold a subquery:
    /// DataFusion plans subqueries nowhere else.
    fn predicate(&mut self, cols: &[Col], depth: usize, nesting: usize) -> String {
        let n = nesting + 1;
        let ty = *self.rng.pick(&[Ty::Int, Ty::Int, Ty::Float, Ty::Str]);
        let kinds = match nesting {
            0 => 9,
            1 => 7,
            _ => 3,
        };
        match self.rng.below(kinds) {
            0 | 1 => {
                let op = self.rng.pick(&["=", "<>", "<", "<=", ">", ">="]);
                format!(
                    "{} {op} {}",
                    self.expr(ty, cols, depth, n),
                    self.expr(ty, cols, depth, n)
                )
            }
            2 => {
                let not = if self.rng.chance(50) { " NOT" } else { "" };
                format!("{} IS{not} NULL", self.expr(ty, cols, depth, n))
            }
            3 => {
                // The conjuncts of a top-level AND are top-level too.
                let left_nesting = if nesting == 0 { 0 } else { n };
                let left = self.predicate(cols, depth, left_nesting);
                format!("({left} AND {})", self.predicate(cols, depth, n))
            }
            4 => format!(
                "({} OR {})",
                self.predicate(cols, depth, n),
                self.predicate(cols, depth, n)
            ),
            5 => format!("NOT ({})", self.predicate(cols, depth, n)),
            6 => format!(
                "{} BETWEEN {} AND {}",
                self.expr(Ty::Int, cols, depth, n),
                self.rng.range(-3, 1),
                self.rng.range(1, 5)
            ),
            kind => {
                let ints: Vec<&Col> = cols.iter().filter(|c| c.ty == Ty::Int).collect();
                if ints.is_empty() {
                    return "TRUE".into();
                }
                let outer = self.rng.pick(&ints).sql.clone();
                let not = if self.rng.chance(40) { "NOT " } else { "" };
                let table = self.rng.below(TABLES);
                if kind == 7 {
                    // A column or, now and then, a constant on the left.
                    let left = if self.rng.chance(25) {
                        self.literal(Ty::Int)
                    } else {
                        outer
                    };
                    let column = self.rng.pick(&["k", "a"]);
                    let bound = self.rng.range(0, 90);
                    let not = if not.is_empty() { "" } else { " NOT" };
                    format!("{left}{not} IN (SELECT {column} FROM t{table} WHERE b > {bound})")
                } else {
                    let alias = self.alias();
                    format!(
                        "{not}EXISTS (SELECT 1 FROM t{table} AS {alias} WHERE {alias}.k = {outer})"
                    )
                }
            }
        }
    }
}

/// A result value, as both engines' answers are compared.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Num(f64),
    Str(String),
}

impl Value {
    fn key(&self) -> String {
        match self {
            Value::Null => "~".into(),
            // -0.0 and 0.0 are one value: one key.
            Value::Num(x) => format!("n{:.6e}", if *x == 0.0 { 0.0 } else { *x }),
            Value::Str(s) => format!("s{s}"),
        }
    }

    fn matches(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Num(x), Value::Num(y)) => (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1.0),
            (a, b) => a == b,
        }
    }
}

type Rows = Vec<Vec<Value>>;

fn sorted(mut rows: Rows) -> Rows {
    rows.sort_by_cached_key(|r| r.iter().map(Value::key).collect::<Vec<_>>());
    rows
}

fn same(a: &Rows, b: &Rows) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.len() == y.len() && x.iter().zip(y).all(|(u, v)| u.matches(v)))
}

fn rows_of(batches: &[RecordBatch]) -> Rows {
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Value>> = batch.columns().iter().map(values).collect();
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[r].clone()).collect());
        }
    }
    rows
}

fn values(array: &ArrayRef) -> Vec<Value> {
    let t = array.data_type();
    if t.is_numeric() {
        let f = cast(array, &DataType::Float64).unwrap();
        let f = f.as_any().downcast_ref::<Float64Array>().unwrap();
        return (0..f.len())
            .map(|i| {
                if f.is_null(i) {
                    Value::Null
                } else {
                    Value::Num(f.value(i))
                }
            })
            .collect();
    }
    let s = cast(array, &DataType::Utf8).unwrap();
    let s = s.as_any().downcast_ref::<StringArray>().unwrap();
    (0..s.len())
        .map(|i| {
            if s.is_null(i) {
                Value::Null
            } else {
                Value::Str(s.value(i).to_string())
            }
        })
        .collect()
}

fn json_rows(rows: &serde_json::Value) -> Rows {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    serde_json::Value::Null => Value::Null,
                    serde_json::Value::Number(n) => Value::Num(n.as_f64().unwrap()),
                    serde_json::Value::String(s) => Value::Str(s.clone()),
                    serde_json::Value::Bool(b) => Value::Num(f64::from(u8::from(*b))),
                    other => panic!("unexpected value from DuckDB: {other}"),
                })
                .collect()
        })
        .collect()
}

/// Each query's DuckDB answer (`Err` for an error), or `None` when no
/// Python with `duckdb` is at hand.
fn duckdb_answers(data: &Path, queries: &[String]) -> Option<Vec<Result<Rows, String>>> {
    let python = std::env::var("CAIRN_PYTHON").unwrap_or_else(|_| "python3".into());
    let required = std::env::var("CAIRN_REQUIRE_DUCKDB").is_ok_and(|v| v == "1");
    let has_duckdb = std::process::Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_duckdb {
        assert!(
            !required,
            "CAIRN_REQUIRE_DUCKDB=1 but '{python}' cannot import duckdb"
        );
        println!("note: '{python}' cannot import duckdb; the comparison with DuckDB is skipped");
        return None;
    }
    let input = data.join("queries.jsonl");
    let output = data.join("duckdb.jsonl");
    let lines: String = queries
        .iter()
        .enumerate()
        .map(|(id, sql)| serde_json::json!({"id": id, "sql": sql}).to_string() + "\n")
        .collect();
    std::fs::write(&input, lines).unwrap();
    let runner = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/differential/duckdb_runner.py");
    let status = std::process::Command::new(&python)
        .arg(runner)
        .args([data, &input, &output])
        .status()
        .unwrap();
    assert!(status.success(), "the DuckDB runner failed");
    let answers = std::fs::read_to_string(output).unwrap();
    Some(
        answers
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                match v.get("error") {
                    Some(e) => Err(e.as_str().unwrap_or_default().to_string()),
                    None => Ok(sorted(json_rows(&v["rows"]))),
                }
            })
            .collect(),
    )
}

async fn cairn_answer(session: &Session, sql: &str) -> Result<Rows, String> {
    match session.sql(sql).await {
        Ok(out) => Ok(sorted(rows_of(&out.last().unwrap().batches))),
        Err(e) => Err(e.to_string()),
    }
}

fn show(rows: &Result<Rows, String>) -> String {
    match rows {
        Err(e) => format!("error: {e}"),
        Ok(rows) if rows.len() > 12 => format!("{} rows, first: {:?}", rows.len(), &rows[..12]),
        Ok(rows) => format!("{rows:?}"),
    }
}

#[test]
fn cairn_agrees_with_duckdb_and_with_itself_under_checkpoints() {
    on_big_stack(|| async {
        let count: usize = env_or("CAIRN_DIFF_QUERIES", 300);
        let seed: u64 = env_or("CAIRN_DIFF_SEED", 0x00c0_ffee);
        println!("differential run: {count} queries, seed {seed}");
        let mut rng = Rng(seed | 1);
        let data = tempfile::tempdir().unwrap();
        // CAIRN_DIFF_KEEP=1 keeps the tables, to replay a query by hand.
        let data_path = if std::env::var("CAIRN_DIFF_KEEP").is_ok_and(|v| v == "1") {
            let kept = data.path().to_path_buf();
            std::mem::forget(data);
            println!("tables kept in {}", kept.display());
            kept
        } else {
            data.path().to_path_buf()
        };
        let checkpoints = tempfile::tempdir().unwrap();
        let ctx = crate::common::dir_ctx(checkpoints.path());
        register_tables(&ctx, &data_path, &mut rng).await;
        let session = Session::new(ctx).unwrap();

        let mut generator = QueryGen { rng, aliases: 0 };
        let marked: Vec<String> = (0..count).map(|_| generator.top()).collect();
        let plain: Vec<String> = marked
            .iter()
            .map(|q| q.replace('⟦', "(").replace('⟧', ")"))
            .collect();
        let with_checkpoints: Vec<String> = marked
            .iter()
            .map(|q| q.replace('⟦', "CHECKPOINT(").replace('⟧', ")"))
            .collect();
        let duck = duckdb_answers(&data_path, &plain);

        let mut wrong = Vec::new();
        let (mut rejected_by_both, mut cairn_only_errors, mut duckdb_only_errors) = (0, 0, 0);
        let mut checkpointed = 0;
        for i in 0..count {
            let ours = cairn_answer(&session, &plain[i]).await;
            let cut = cairn_answer(&session, &with_checkpoints[i]).await;
            if marked[i].contains('⟦') {
                checkpointed += 1;
            }
            // Wrong: different rows, or a checkpoint that breaks a query.
            // (A checkpoint that avoids one of DataFusion's planning errors
            // is noted, not failed.)
            let agree = match (&ours, &cut) {
                (Ok(a), Ok(b)) => same(a, b),
                (Err(_), Err(_)) => true,
                (Ok(_), Err(_)) => false,
                (Err(e), Ok(_)) => {
                    println!("query {i}: fails without its checkpoints only: {e}");
                    true
                }
            };
            if !agree {
                wrong.push(format!(
                    "query {i}: with CHECKPOINT differs\n  {}\n  plain: {}\n  checkpointed: {}",
                    with_checkpoints[i],
                    show(&ours),
                    show(&cut)
                ));
            }
            let Some(duck) = &duck else { continue };
            match (&ours, &duck[i]) {
                (Ok(a), Ok(b)) if !same(a, b) => wrong.push(format!(
                    "query {i}: Cairn and DuckDB differ\n  {}\n  cairn: {}\n  duckdb: {}",
                    plain[i],
                    show(&ours),
                    show(&duck[i])
                )),
                (Err(_), Err(_)) => rejected_by_both += 1,
                (Err(e), Ok(_)) => {
                    cairn_only_errors += 1;
                    println!("query {i}: only Cairn rejects it: {e}\n  {}", plain[i]);
                }
                (Ok(_), Err(e)) => {
                    duckdb_only_errors += 1;
                    println!("query {i}: only DuckDB rejects it: {e}\n  {}", plain[i]);
                }
                _ => {}
            }
        }
        println!(
            "{count} queries ({checkpointed} with checkpoints): {} wrong, {rejected_by_both} \
             rejected by both, {cairn_only_errors} only by Cairn, {duckdb_only_errors} only by DuckDB",
            wrong.len()
        );
        assert!(
            wrong.is_empty(),
            "{} of {count} queries disagree:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        // A generator that mostly writes invalid SQL tests nothing.
        assert!(
            (rejected_by_both + cairn_only_errors + duckdb_only_errors) * 10 <= count,
            "too many queries were rejected"
        );
        assert!(checkpointed * 4 >= count, "too few queries had checkpoints");
    });
}
