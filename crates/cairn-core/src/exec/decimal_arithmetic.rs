//! [`DecimalArithmeticExpr`]: `+`, `-` and `*` of `Decimal128` values in a
//! plain loop where no row can overflow.
//!
//! Arrow 59 computes decimal arithmetic with a checked i128 operation per
//! row, a call and an overflow test each, even where DataFusion asks for
//! the wrapping kernel (`mul_wrapping` is `mul_checked` for decimals).
//! TPC-H Q01 spent about 30% of its time there. The largest magnitude of
//! each operand bounds every result: when that bound fits in an i128, no
//! row overflows and wrapping operations give the checked ones' values, in
//! a loop the compiler keeps tight. Otherwise arrow's kernel runs, and
//! fails as it did. Result precision and scale follow arrow's rules.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, RecordBatch};
use datafusion::arrow::compute::binary;
use datafusion::arrow::compute::kernels::numeric::{add, mul, sub};
use datafusion::arrow::datatypes::{
    DECIMAL128_MAX_PRECISION, DECIMAL128_MAX_SCALE, DataType, FieldRef, Schema,
};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::sort_properties::ExprProperties;
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::BinaryExpr;
use datafusion::physical_expr_common::datum::apply;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;
use datafusion_proto::protobuf::PhysicalExprNode;

/// A decimal `+`, `-` or `*`: a [`BinaryExpr`] that shows, plans and
/// serializes as one, evaluated without a checked operation per row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecimalArithmeticExpr {
    binary: BinaryExpr,
}

impl DecimalArithmeticExpr {
    /// `expr` evaluated this way, if it is a `+`, `-` or `*` of two
    /// `Decimal128` operands over `schema`; `None` otherwise.
    pub fn wrap(
        expr: &Arc<dyn PhysicalExpr>,
        schema: &Schema,
    ) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        let Some(binary) = expr.downcast_ref::<BinaryExpr>() else {
            return Ok(None);
        };
        if !matches!(
            binary.op(),
            Operator::Plus | Operator::Minus | Operator::Multiply
        ) {
            return Ok(None);
        }
        let decimal = |e: &Arc<dyn PhysicalExpr>| -> Result<bool> {
            Ok(matches!(e.data_type(schema)?, DataType::Decimal128(_, _)))
        };
        if !(decimal(binary.left())? && decimal(binary.right())?) {
            return Ok(None);
        }
        Ok(Some(Arc::new(Self {
            binary: binary.clone(),
        })))
    }

    /// The expression as DataFusion planned it.
    pub fn binary(&self) -> &BinaryExpr {
        &self.binary
    }
}

impl fmt::Display for DecimalArithmeticExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.binary, f)
    }
}

impl PhysicalExpr for DecimalArithmeticExpr {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.binary.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.binary.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.binary.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let lhs = self.binary.left().evaluate(batch)?;
        let rhs = self.binary.right().evaluate(batch)?;
        if let Some(array) = unchecked(*self.binary.op(), &lhs, &rhs)? {
            return Ok(ColumnarValue::Array(array));
        }
        // For decimals arrow's wrapping kernels check too: these are what
        // `BinaryExpr` runs, whichever it asks for.
        match self.binary.op() {
            Operator::Plus => apply(&lhs, &rhs, add),
            Operator::Minus => apply(&lhs, &rhs, sub),
            _ => apply(&lhs, &rhs, mul),
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![self.binary.left(), self.binary.right()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let rebuilt = Arc::new(self.binary.clone()).with_new_children(children)?;
        let binary = rebuilt
            .downcast_ref::<BinaryExpr>()
            .expect("a BinaryExpr rebuilds as one")
            .clone();
        Ok(Arc::new(Self { binary }))
    }

    fn evaluate_bounds(&self, children: &[&Interval]) -> Result<Interval> {
        self.binary.evaluate_bounds(children)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        children: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.binary.propagate_constraints(interval, children)
    }

    fn get_properties(&self, children: &[ExprProperties]) -> Result<ExprProperties> {
        self.binary.get_properties(children)
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.binary.fmt_sql(f)
    }

    /// Sent as the `BinaryExpr` it is: the receiver computes the same.
    fn try_to_proto(&self, ctx: &PhysicalExprEncodeCtx<'_>) -> Result<Option<PhysicalExprNode>> {
        self.binary.try_to_proto(ctx)
    }
}

/// One operand: a column's values or a constant.
enum Operand<'a> {
    Array(&'a Decimal128Array),
    Scalar(i128),
}

impl<'a> Operand<'a> {
    /// The operand and its precision and scale; `None` for what the fast
    /// path leaves to arrow (other types, a NULL constant).
    fn of(value: &'a ColumnarValue) -> Option<(Self, u8, i8)> {
        match value {
            ColumnarValue::Array(array) => match array.data_type() {
                DataType::Decimal128(p, s) => Some((Self::Array(array.as_primitive()), *p, *s)),
                _ => None,
            },
            ColumnarValue::Scalar(ScalarValue::Decimal128(Some(v), p, s)) => {
                Some((Self::Scalar(*v), *p, *s))
            }
            ColumnarValue::Scalar(_) => None,
        }
    }

    /// Whether every value fits in an i64 (NULL slots included), which
    /// bounds its magnitude by 2^63 and lets products widen from 64 bits.
    /// One pass the compiler vectorizes, unlike a maximum over i128.
    fn narrow(&self) -> bool {
        match self {
            Self::Array(array) => {
                let spill = array.values().iter().fold(0_u64, |acc, v| {
                    // The high half is the low half's sign, repeated.
                    acc | (((v >> 64) as u64) ^ (((*v as i64) >> 63) as u64))
                });
                spill == 0
            }
            Self::Scalar(v) => i64::try_from(*v).is_ok(),
        }
    }

    /// No value of the operand is larger in magnitude.
    fn bound(&self, narrow: bool) -> u128 {
        match self {
            _ if narrow => 1 << 63,
            Self::Array(array) => array
                .values()
                .iter()
                .map(|v| v.unsigned_abs())
                .max()
                .unwrap_or(0),
            Self::Scalar(v) => v.unsigned_abs(),
        }
    }
}

/// `lhs op rhs` with wrapping operations, when the operands' bounds show
/// that no row overflows; `None` leaves it to arrow's checked kernel.
fn unchecked(op: Operator, lhs: &ColumnarValue, rhs: &ColumnarValue) -> Result<Option<ArrayRef>> {
    let (Some((l, p1, s1)), Some((r, p2, s2))) = (Operand::of(lhs), Operand::of(rhs)) else {
        return Ok(None);
    };
    if matches!((&l, &r), (Operand::Scalar(_), Operand::Scalar(_))) {
        return Ok(None);
    }
    // Arrow's (Hive's) result types, and the factors that align scales.
    let (precision, scale, l_factor, r_factor) = match op {
        Operator::Multiply => {
            let scale = s1.saturating_add(s2);
            if scale > DECIMAL128_MAX_SCALE {
                return Ok(None);
            }
            let precision = p1.saturating_add(p2 + 1).min(DECIMAL128_MAX_PRECISION);
            (precision, scale, 1, 1)
        }
        _ => {
            let scale = s1.max(s2);
            let digits = (p1 as i8 - s1).max(p2 as i8 - s2);
            let precision = (scale.saturating_add(digits) as u8)
                .saturating_add(1)
                .min(DECIMAL128_MAX_PRECISION);
            let factor = |s: i8| 10_i128.checked_pow((scale - s) as u32);
            let (Some(l_factor), Some(r_factor)) = (factor(s1), factor(s2)) else {
                return Ok(None);
            };
            (precision, scale, l_factor, r_factor)
        }
    };
    let (l_narrow, r_narrow) = (l.narrow(), r.narrow());
    let (l_bound, r_bound) = (l.bound(l_narrow), r.bound(r_narrow));
    let largest = match op {
        Operator::Multiply => l_bound.checked_mul(r_bound),
        _ => l_bound
            .checked_mul(l_factor as u128)
            .zip(r_bound.checked_mul(r_factor as u128))
            .and_then(|(a, b)| a.checked_add(b)),
    };
    if largest.is_none_or(|m| m > i128::MAX as u128) {
        return Ok(None);
    }
    let array = match op {
        Operator::Multiply if l_narrow && r_narrow => {
            compute(&l, &r, |a, b| (a as i64 as i128) * (b as i64 as i128))?
        }
        Operator::Multiply => compute(&l, &r, |a, b| a.wrapping_mul(b))?,
        Operator::Plus if l_factor == 1 && r_factor == 1 => {
            compute(&l, &r, |a, b| a.wrapping_add(b))?
        }
        Operator::Minus if l_factor == 1 && r_factor == 1 => {
            compute(&l, &r, |a, b| a.wrapping_sub(b))?
        }
        Operator::Plus => compute(&l, &r, |a, b| {
            a.wrapping_mul(l_factor)
                .wrapping_add(b.wrapping_mul(r_factor))
        })?,
        _ => compute(&l, &r, |a, b| {
            a.wrapping_mul(l_factor)
                .wrapping_sub(b.wrapping_mul(r_factor))
        })?,
    };
    Ok(Some(Arc::new(
        array.with_precision_and_scale(precision, scale)?,
    )))
}

/// `f` over the rows; a row is NULL where an operand is.
fn compute(l: &Operand, r: &Operand, f: impl Fn(i128, i128) -> i128) -> Result<Decimal128Array> {
    Ok(match (l, r) {
        (Operand::Array(a), Operand::Array(b)) => binary(*a, *b, f)?,
        (Operand::Array(a), Operand::Scalar(v)) => a.unary(|x| f(x, *v)),
        (Operand::Scalar(v), Operand::Array(b)) => b.unary(|y| f(*v, y)),
        (Operand::Scalar(_), Operand::Scalar(_)) => unreachable!("two constants are left to arrow"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::{col, lit};

    fn batch(l: Vec<Option<i128>>, r: Vec<Option<i128>>) -> RecordBatch {
        let l = Decimal128Array::from(l)
            .with_precision_and_scale(15, 2)
            .unwrap();
        let r = Decimal128Array::from(r)
            .with_precision_and_scale(12, 4)
            .unwrap();
        let schema = Schema::new(vec![
            Field::new("l", l.data_type().clone(), true),
            Field::new("r", r.data_type().clone(), true),
        ]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(l), Arc::new(r)]).unwrap()
    }

    /// The fast path's answer and arrow's, for `l op r` and `l op constant`.
    fn both(op: Operator, batch: &RecordBatch) -> Vec<(Result<ArrayRef>, Result<ArrayRef>)> {
        let schema = batch.schema();
        let constant = lit(ScalarValue::Decimal128(Some(-12_345), 7, 3));
        [col("r", &schema).unwrap(), constant]
            .into_iter()
            .map(|right| {
                let plain: Arc<dyn PhysicalExpr> =
                    Arc::new(BinaryExpr::new(col("l", &schema).unwrap(), op, right));
                let fast = DecimalArithmeticExpr::wrap(&plain, &schema)
                    .unwrap()
                    .unwrap();
                assert_eq!(fast.to_string(), plain.to_string());
                let run = |e: &Arc<dyn PhysicalExpr>| {
                    e.evaluate(batch)
                        .and_then(|v| v.into_array(batch.num_rows()))
                };
                (run(&fast), run(&plain))
            })
            .collect()
    }

    #[test]
    fn answers_as_arrow_does_with_nulls_and_different_scales() {
        let small = batch(
            vec![Some(10_050), None, Some(-999_999_999_999_999), Some(7)],
            vec![Some(-3), Some(5), Some(99_999_999_999), None],
        );
        // Beyond 64 bits, yet no result overflows: the exact bound decides.
        let wide = batch(
            vec![Some(1 << 70), Some(-(1 << 66)), None],
            vec![Some(3), Some(-(1 << 40)), Some(1 << 90)],
        );
        for batch in [small, wide] {
            for op in [Operator::Plus, Operator::Minus, Operator::Multiply] {
                for (fast, plain) in both(op, &batch) {
                    let (fast, plain) = (fast.unwrap(), plain.unwrap());
                    assert_eq!(fast.data_type(), plain.data_type(), "{op}");
                    assert_eq!(fast.as_ref(), plain.as_ref(), "{op}");
                }
            }
        }
    }

    #[test]
    fn what_may_overflow_fails_as_in_arrow() {
        // Values beyond their declared precision: a bound no i128 holds.
        let huge = i128::MAX / 3;
        let batch = batch(vec![Some(huge), Some(1)], vec![Some(huge), Some(2)]);
        let [(fast, plain), _] = both(Operator::Multiply, &batch).try_into().unwrap();
        let (fast, plain) = (fast.unwrap_err(), plain.unwrap_err());
        assert_eq!(fast.to_string(), plain.to_string());
        assert!(fast.to_string().contains("Overflow"), "{fast}");
    }

    #[test]
    fn only_decimal_arithmetic_is_wrapped() {
        let batch = batch(vec![Some(1)], vec![Some(2)]);
        let schema = batch.schema();
        let compare: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("l", &schema).unwrap(),
            Operator::Lt,
            col("r", &schema).unwrap(),
        ));
        assert!(
            DecimalArithmeticExpr::wrap(&compare, &schema)
                .unwrap()
                .is_none()
        );
        let ints: Arc<dyn PhysicalExpr> =
            Arc::new(BinaryExpr::new(lit(1_i64), Operator::Multiply, lit(2_i64)));
        assert!(
            DecimalArithmeticExpr::wrap(&ints, &schema)
                .unwrap()
                .is_none()
        );
    }
}
