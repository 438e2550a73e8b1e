//! [`NarrowingConjunction`]: a filter's `a AND b AND c` tested so that each
//! condition reads only the rows the earlier ones kept, and only the
//! columns it names.
//!
//! DataFusion's `AND` evaluates its right side on the rows its left side
//! kept once those are fewer than a fifth (pre-selection), but each level
//! of `((a AND b) AND c)` filters every column of the whole batch again
//! and scatters its answer back to the batch's length. TPC-H Q06 spent a
//! quarter of its time there. Here the kept rows are a list of indices
//! once they are fewer than half: each later condition gathers just its
//! columns at those indices, and the list shrinks as it goes.

use std::collections::BTreeSet;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::BooleanBufferBuilder;
use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array,
};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::compute::{filter, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::{collect_columns, conjunction};
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion_proto::protobuf::PhysicalExprNode;

/// One condition, and the same condition over only the columns it reads.
#[derive(Debug, Clone)]
struct Condition {
    expr: Arc<dyn PhysicalExpr>,
    /// The batch's columns it reads, in order.
    columns: Vec<usize>,
    /// `expr` over a batch of just `columns`.
    narrow: Arc<dyn PhysicalExpr>,
}

// By hand: derived for a `dyn` field they move it (rust-lang/rust#78808).
// The rest follows from `expr`.
impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.expr.eq(&other.expr)
    }
}

impl Eq for Condition {}

impl Hash for Condition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expr.hash(state);
    }
}

impl Condition {
    fn new(expr: Arc<dyn PhysicalExpr>) -> Result<Self> {
        let columns: Vec<usize> = collect_columns(&expr)
            .iter()
            .map(Column::index)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let narrow = Arc::clone(&expr)
            .transform_up(|e| {
                let Some(column) = e.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(e));
                };
                let at = columns.binary_search(&column.index()).expect("collected");
                Ok(Transformed::yes(
                    Arc::new(Column::new(column.name(), at)) as _
                ))
            })?
            .data;
        Ok(Self {
            expr,
            columns,
            narrow,
        })
    }
}

/// A filter's conjunction, kept as its conditions in the order written:
/// keeps the rows where every condition is true (a NULL keeps none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NarrowingConjunction {
    conditions: Vec<Condition>,
}

impl NarrowingConjunction {
    /// `conditions` tested in order; at least two.
    pub fn try_new(conditions: Vec<Arc<dyn PhysicalExpr>>) -> Result<Self> {
        if conditions.len() < 2 {
            return internal_err!("a narrowing conjunction has two conditions or more");
        }
        Ok(Self {
            conditions: conditions
                .into_iter()
                .map(Condition::new)
                .collect::<Result<_>>()?,
        })
    }

    fn as_conjunction(&self) -> Arc<dyn PhysicalExpr> {
        conjunction(self.conditions.iter().map(|c| Arc::clone(&c.expr)))
    }
}

impl fmt::Display for NarrowingConjunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_conjunction(), f)
    }
}

/// Which rows are still kept.
enum Kept {
    /// A bit per row of the batch.
    Mask(BooleanBuffer),
    /// The rows' positions, ascending.
    Rows(UInt32Array),
}

/// Below this share of the batch, later conditions read gathered rows.
const GATHER_BELOW: f64 = 0.5;

impl PhysicalExpr for NarrowingConjunction {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _input_schema: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let rows = batch.num_rows();
        let mut kept = Kept::Mask(BooleanBuffer::new_set(rows));
        for condition in &self.conditions {
            kept = match kept {
                Kept::Mask(mask) => {
                    let now = &mask & &truths(condition.expr.evaluate(batch)?, rows)?;
                    if (now.count_set_bits() as f64) < GATHER_BELOW * rows as f64 {
                        Kept::Rows(UInt32Array::from_iter_values(
                            now.set_indices().map(|i| i as u32),
                        ))
                    } else {
                        Kept::Mask(now)
                    }
                }
                Kept::Rows(at) if at.is_empty() => Kept::Rows(at),
                Kept::Rows(at) => {
                    let gathered = gather(batch, &condition.columns, &at)?;
                    let truth = truths(condition.narrow.evaluate(&gathered)?, at.len())?;
                    Kept::Rows(
                        filter(&at, &BooleanArray::new(truth, None))?
                            .as_primitive()
                            .clone(),
                    )
                }
            };
        }
        let mask = match kept {
            Kept::Mask(mask) => mask,
            Kept::Rows(at) => {
                let mut bits = BooleanBufferBuilder::new(rows);
                bits.append_n(rows, false);
                at.values()
                    .iter()
                    .for_each(|i| bits.set_bit(*i as usize, true));
                bits.finish()
            }
        };
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            mask, None,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.conditions.iter().map(|c| &c.expr).collect()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(Self::try_new(children)?))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_conjunction().fmt_sql(f)
    }

    /// Sent as the conjunction it is: the receiver keeps the same rows.
    fn try_to_proto(&self, ctx: &PhysicalExprEncodeCtx<'_>) -> Result<Option<PhysicalExprNode>> {
        self.as_conjunction().try_to_proto(ctx)
    }
}

/// The rows `at` of `batch`'s `columns`; a condition that reads no column
/// gets a batch of no columns with as many rows.
fn gather(batch: &RecordBatch, columns: &[usize], at: &UInt32Array) -> Result<RecordBatch> {
    if columns.is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(at.len()));
        return Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &options,
        )?);
    }
    Ok(take_record_batch(&batch.project(columns)?, at)?)
}

/// The rows where a condition is true: NULL and false keep none.
fn truths(value: ColumnarValue, rows: usize) -> Result<BooleanBuffer> {
    Ok(match value {
        ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => BooleanBuffer::new_set(rows),
        ColumnarValue::Scalar(ScalarValue::Boolean(_)) => BooleanBuffer::new_unset(rows),
        ColumnarValue::Array(array) => {
            let Some(truth) = array.as_boolean_opt() else {
                return internal_err!("a filter's condition answered {}", array.data_type());
            };
            match truth.nulls() {
                Some(nulls) => truth.values() & nulls.inner(),
                None => truth.values().clone(),
            }
        }
        ColumnarValue::Scalar(other) => {
            return internal_err!("a filter's condition answered {}", other.data_type());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, col, lit};

    fn batch() -> RecordBatch {
        let n = Int64Array::from_iter((0..1000).map(|i| (i % 7 != 0).then_some(i)));
        let s = StringArray::from_iter_values((0..1000).map(|i| format!("s{}", i % 10)));
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, false),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(n), Arc::new(s)]).unwrap()
    }

    fn cmp(name: &str, op: Operator, value: Arc<dyn PhysicalExpr>) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(
            col(name, &batch().schema()).unwrap(),
            op,
            value,
        ))
    }

    fn kept(expr: &Arc<dyn PhysicalExpr>) -> Vec<bool> {
        let batch = batch();
        let value = expr
            .evaluate(&batch)
            .unwrap()
            .into_array(batch.num_rows())
            .unwrap();
        value.as_boolean().iter().map(|v| v == Some(true)).collect()
    }

    #[test]
    fn keeps_the_rows_every_condition_keeps_dense_or_sparse() {
        // 90% kept, then 10% (rows gathered from here), then a string test.
        let conditions = vec![
            cmp("n", Operator::GtEq, lit(100_i64)),
            cmp("n", Operator::Lt, lit(200_i64)),
            cmp("s", Operator::Eq, lit("s3")),
            cmp("n", Operator::NotEq, lit(133_i64)),
        ];
        let plain = conjunction(conditions.clone());
        let narrowing: Arc<dyn PhysicalExpr> =
            Arc::new(NarrowingConjunction::try_new(conditions).unwrap());
        assert_eq!(narrowing.to_string(), plain.to_string());
        let expected = kept(&plain);
        assert_eq!(kept(&narrowing), expected);
        // 103, 113, ..., 193 less 133 (a multiple of 7: NULL, and excluded).
        assert_eq!(expected.iter().filter(|k| **k).count(), 9);
    }

    #[test]
    fn a_condition_that_reads_no_column_sees_the_kept_rows() {
        let constant: Arc<dyn PhysicalExpr> =
            Arc::new(BinaryExpr::new(lit(1_i64), Operator::Eq, lit(1_i64)));
        let conditions = vec![cmp("n", Operator::Lt, lit(100_i64)), constant];
        let plain = conjunction(conditions.clone());
        let narrowing: Arc<dyn PhysicalExpr> =
            Arc::new(NarrowingConjunction::try_new(conditions).unwrap());
        assert_eq!(kept(&narrowing), kept(&plain));
    }

    #[test]
    fn nothing_kept_early_ends_with_nothing() {
        let conditions = vec![
            cmp("n", Operator::Lt, lit(0_i64)),
            cmp("s", Operator::Eq, lit("s1")),
        ];
        let narrowing: Arc<dyn PhysicalExpr> =
            Arc::new(NarrowingConjunction::try_new(conditions).unwrap());
        assert!(kept(&narrowing).iter().all(|k| !k));
    }
}
