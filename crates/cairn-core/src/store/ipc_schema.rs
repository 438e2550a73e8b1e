//! The Arrow IPC bytes of a checkpoint's schema, kept in its manifest so that
//! every type round-trips exactly.
//!
//! arrow-ipc 59 panics on type descriptions it does not support (an `Int` of
//! 7 bits, a list without a child, ...). A manifest comes from storage and
//! may be damaged or hostile, so its schema is checked with the same rules
//! before arrow converts it, and refused with an error instead.

use arrow_ipc_types::{DateUnit, Endianness, IntervalUnit, Precision, TimeUnit, Type, UnionMode};
use datafusion::arrow::datatypes::{Field, Schema, UnionFields};
use datafusion::arrow::ipc::convert::{IpcSchemaEncoder, fb_to_schema};
use datafusion::arrow::ipc::writer::DictionaryTracker;
use datafusion::arrow::ipc::{self as arrow_ipc_types, root_as_schema};

/// The IPC flatbuffer of `schema`.
pub fn encode(schema: &Schema) -> Vec<u8> {
    // Dictionary fields need a tracker to be given ids.
    let mut dictionaries = DictionaryTracker::new(false);
    IpcSchemaEncoder::new()
        .with_dictionary_tracker(&mut dictionaries)
        .schema_to_fb(schema)
        .finished_data()
        .to_vec()
}

/// The schema in `bytes`, or what is wrong with them.
pub fn decode(bytes: &[u8]) -> Result<Schema, String> {
    let fb = root_as_schema(bytes).map_err(|e| format!("schema does not decode: {e}"))?;
    let fields = fb.fields().ok_or("schema has no field list")?;
    for field in fields {
        check_field(field, true, fb.endianness())
            .map_err(|problem| format!("schema is not supported: {problem}"))?;
    }
    Ok(fb_to_schema(fb))
}

/// Whether arrow-ipc can convert `field` (see `get_data_type` in arrow-ipc's
/// `convert.rs`, whose cases this follows).
fn check_field(
    field: arrow_ipc_types::Field,
    may_be_dictionary: bool,
    endianness: Endianness,
) -> Result<(), String> {
    let name = field.name().unwrap_or_default();
    let bad = |what: String| Err(format!("field '{name}' {what}"));
    if may_be_dictionary && let Some(dictionary) = field.dictionary() {
        let Some(index) = dictionary.indexType() else {
            return bad("is a dictionary without an index type".into());
        };
        if !matches!(index.bitWidth(), 8 | 16 | 32 | 64) {
            return bad(format!("has a {}-bit dictionary index", index.bitWidth()));
        }
        return check_field(field, false, endianness);
    }
    let children = || field.children().map(|c| c.iter().collect::<Vec<_>>());
    let ty = field.type_type();
    // Is present when the union tag says it is; checked so a tag without
    // its table is an error too.
    let present = match ty {
        Type::Int => field.type_as_int().is_some(),
        Type::FixedSizeBinary => field
            .type_as_fixed_size_binary()
            .is_some_and(|t| t.byteWidth() >= 0),
        Type::FloatingPoint => field.type_as_floating_point().is_some_and(|t| {
            matches!(
                t.precision(),
                Precision::HALF | Precision::SINGLE | Precision::DOUBLE
            )
        }),
        Type::Date => field
            .type_as_date()
            .is_some_and(|t| matches!(t.unit(), DateUnit::DAY | DateUnit::MILLISECOND)),
        Type::Time => field.type_as_time().is_some_and(|t| {
            matches!(
                (t.bitWidth(), t.unit()),
                (32, TimeUnit::SECOND | TimeUnit::MILLISECOND)
                    | (64, TimeUnit::MICROSECOND | TimeUnit::NANOSECOND)
            )
        }),
        // Arrow writes no time zone rather than an empty one, and reads an
        // empty one back as such: refused, as no manifest holds one.
        Type::Timestamp => field
            .type_as_timestamp()
            .is_some_and(|t| known_time_unit(t.unit()) && t.timezone() != Some("")),
        Type::Duration => field
            .type_as_duration()
            .is_some_and(|t| known_time_unit(t.unit())),
        Type::Interval => field.type_as_interval().is_some_and(|t| {
            matches!(
                t.unit(),
                IntervalUnit::YEAR_MONTH | IntervalUnit::DAY_TIME | IntervalUnit::MONTH_DAY_NANO
            )
        }),
        Type::FixedSizeList => field
            .type_as_fixed_size_list()
            .is_some_and(|t| t.listSize() >= 0),
        Type::Map => field.type_as_map().is_some(),
        Type::Decimal => field.type_as_decimal().is_some_and(|t| {
            endianness != Endianness::Big
                && u8::try_from(t.precision()).is_ok()
                && i8::try_from(t.scale()).is_ok()
                && matches!(t.bitWidth(), 32 | 64 | 128 | 256)
        }),
        Type::Union => field
            .type_as_union()
            .is_some_and(|t| matches!(t.mode(), UnionMode::Dense | UnionMode::Sparse)),
        Type::Null
        | Type::Bool
        | Type::Binary
        | Type::BinaryView
        | Type::LargeBinary
        | Type::Utf8
        | Type::Utf8View
        | Type::LargeUtf8
        | Type::List
        | Type::LargeList
        | Type::ListView
        | Type::LargeListView
        | Type::Struct_
        | Type::RunEndEncoded => true,
        other => return bad(format!("has type {other:?}, which is not supported")),
    };
    if !present {
        return bad(format!("has a {ty:?} type that is not valid"));
    }
    if ty == Type::Int {
        let int = field.type_as_int().expect("checked above");
        if !matches!(int.bitWidth(), 8 | 16 | 32 | 64) {
            return bad(format!("is a {}-bit integer", int.bitWidth()));
        }
    }
    let wanted_children = match ty {
        Type::List
        | Type::LargeList
        | Type::ListView
        | Type::LargeListView
        | Type::FixedSizeList
        | Type::Map => Some(1),
        Type::RunEndEncoded => Some(2),
        _ => None,
    };
    let children = children().unwrap_or_default();
    if let Some(n) = wanted_children
        && children.len() != n
    {
        return bad(format!(
            "is a {ty:?} with {} children instead of {n}",
            children.len()
        ));
    }
    for child in &children {
        check_field(*child, true, endianness)?;
    }
    if ty == Type::Union {
        let union = field.type_as_union().expect("checked above");
        if let Some(ids) = union.typeIds() {
            let fields = children.iter().map(|c| Field::from(*c));
            UnionFields::try_new(ids.iter().map(|i| i as i8), fields)
                .map_err(|e| format!("field '{name}' is a union that is not valid: {e}"))?;
        } else if children.len() > 128 {
            return bad(format!("is a union of {} types", children.len()));
        }
    }
    Ok(())
}

fn known_time_unit(unit: TimeUnit) -> bool {
    matches!(
        unit,
        TimeUnit::SECOND | TimeUnit::MILLISECOND | TimeUnit::MICROSECOND | TimeUnit::NANOSECOND
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit, UnionMode};

    use super::*;

    #[test]
    fn every_kind_of_type_round_trips() {
        let item = Arc::new(Field::new("item", DataType::Int32, true));
        let schema = Schema::new(vec![
            Field::new(
                "dict",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("list", DataType::List(item.clone()), true),
            Field::new("fixed", DataType::FixedSizeList(item.clone(), 3), true),
            Field::new(
                "map",
                DataType::Map(
                    Arc::new(Field::new(
                        "entries",
                        DataType::Struct(Fields::from(vec![
                            Field::new("key", DataType::Utf8, false),
                            Field::new("value", DataType::Int64, true),
                        ])),
                        false,
                    )),
                    false,
                ),
                true,
            ),
            Field::new(
                "union",
                DataType::Union(
                    UnionFields::try_new(
                        [3, 7],
                        [
                            Field::new("a", DataType::Int8, true),
                            Field::new("b", DataType::Utf8, true),
                        ],
                    )
                    .unwrap(),
                    UnionMode::Dense,
                ),
                true,
            ),
            Field::new("dec", DataType::Decimal256(40, -2), true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), true),
        ]);
        assert_eq!(decode(&encode(&schema)).unwrap(), schema);
    }

    /// A schema of one field `name` tagged `ty`, whose type table `table`
    /// builds: by hand, to describe what arrow's own encoder never writes.
    fn one_field_schema(
        name: &str,
        ty: Type,
        table: impl FnOnce(
            &mut flatbuffers::FlatBufferBuilder<'static>,
        ) -> flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>,
    ) -> Vec<u8> {
        use arrow_ipc_types as fb;
        let mut fbb = flatbuffers::FlatBufferBuilder::new();
        let type_ = table(&mut fbb);
        let name = fbb.create_string(name);
        let children = fbb.create_vector::<flatbuffers::WIPOffset<fb::Field>>(&[]);
        let field = fb::Field::create(
            &mut fbb,
            &fb::FieldArgs {
                name: Some(name),
                nullable: true,
                type_type: ty,
                type_: Some(type_),
                children: Some(children),
                ..Default::default()
            },
        );
        let fields = fbb.create_vector(&[field]);
        let schema = fb::Schema::create(
            &mut fbb,
            &fb::SchemaArgs {
                fields: Some(fields),
                ..Default::default()
            },
        );
        fbb.finish(schema, None);
        fbb.finished_data().to_vec()
    }

    /// A field `n` tagged `ty` whose type table is an Int of `bit_width`.
    fn one_field(ty: Type, bit_width: i32) -> Vec<u8> {
        one_field_schema("n", ty, |fbb| {
            let args = arrow_ipc_types::IntArgs {
                bitWidth: bit_width,
                is_signed: true,
            };
            arrow_ipc_types::Int::create(fbb, &args).as_union_value()
        })
    }

    /// Found by the manifest_schema fuzz target: a timestamp with an empty
    /// time zone decoded, but did not survive being written again.
    #[test]
    fn an_empty_time_zone_is_refused() {
        use arrow_ipc_types as fb;
        let bytes = one_field_schema("v", Type::Timestamp, |fbb| {
            let zone = fbb.create_string("");
            let args = fb::TimestampArgs {
                unit: fb::TimeUnit::SECOND,
                timezone: Some(zone),
            };
            fb::Timestamp::create(fbb, &args).as_union_value()
        });
        assert_eq!(
            decode(&bytes).unwrap_err(),
            "schema is not supported: field 'v' has a Timestamp type that is not valid"
        );
    }

    #[test]
    fn what_arrow_would_panic_on_is_an_error() {
        assert_eq!(
            decode(&one_field(Type::Int, 64)).unwrap(),
            Schema::new(vec![Field::new("n", DataType::Int64, true)])
        );
        let refused = |ty, bits| decode(&one_field(ty, bits)).unwrap_err();
        assert_eq!(
            refused(Type::Int, 7),
            "schema is not supported: field 'n' is a 7-bit integer"
        );
        assert_eq!(
            refused(Type::List, 32),
            "schema is not supported: field 'n' is a List with 0 children instead of 1"
        );
        // The tag says Date; the Int table read as one has unit 32.
        assert_eq!(
            refused(Type::Date, 32),
            "schema is not supported: field 'n' has a Date type that is not valid"
        );
        assert!(decode(b"not a flatbuffer").is_err());
    }
}
