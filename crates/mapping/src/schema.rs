//! The shape of each entity's JSON, read off a default record: which field paths exist, which are
//! arrays, and where free-form `extra` objects begin. Used to check mapping paths when the
//! configuration loads instead of failing on every record.

use crate::spec::FieldPath;
use erpsync_model::{
    Customer, Document, EntityKind, Order, OrderStatusChange, PriceList, Product, Record, Refund, Shipment, StockLevel,
};
use serde_json::Value;

/// What a valid path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The model holds a list there: a single mapped value is wrapped in one.
    pub list: bool,
}

/// Why a path does not fit the entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathProblem {
    UnknownField { parent: String, field: String, suggestion: Option<String> },
    IntoArray { array: String, inner: String },
    IntoScalar { parent: String, found: &'static str },
}

pub(crate) fn default_record(kind: EntityKind) -> Record {
    match kind {
        EntityKind::Product => Record::Product(Product::default()),
        EntityKind::PriceList => Record::PriceList(PriceList::default()),
        EntityKind::StockLevel => Record::StockLevel(StockLevel::default()),
        EntityKind::Customer => Record::Customer(Customer::default()),
        EntityKind::Order => Record::Order(Order::default()),
        EntityKind::OrderStatus => Record::OrderStatus(OrderStatusChange::default()),
        EntityKind::Shipment => Record::Shipment(Shipment::default()),
        EntityKind::Document => Record::Document(Document::default()),
        EntityKind::Refund => Record::Refund(Refund::default()),
    }
}

/// Checks `path` against the entity's shape. Fields under `null` in the default record (optional
/// objects) and under any `extra` cannot be checked and are accepted.
pub(crate) fn check_path(kind: EntityKind, path: &FieldPath) -> Result<Target, PathProblem> {
    // A default record always serializes: see `erpsync_model::content_hash`.
    let shape = serde_json::to_value(default_record(kind)).expect("records always serialize");
    let mut current = &shape;
    for (index, segment) in path.segments.iter().enumerate() {
        let parent = path.segments[..index].join(".");
        current = match current {
            Value::Object(fields) => match fields.get(segment) {
                Some(next) => next,
                None => {
                    let known: Vec<&str> = fields.keys().map(String::as_str).filter(|name| *name != "entity").collect();
                    return Err(PathProblem::UnknownField {
                        parent,
                        field: segment.clone(),
                        suggestion: closest(segment, &known).map(str::to_string),
                    });
                }
            },
            Value::Array(_) => {
                return Err(PathProblem::IntoArray { array: parent, inner: path.segments[index..].join(".") });
            }
            Value::Null => return Ok(Target { list: false }),
            scalar => return Err(PathProblem::IntoScalar { parent, found: crate::json::type_name(scalar) }),
        };
        if segment == "extra" && current.is_object() {
            return Ok(Target { list: false });
        }
    }
    Ok(Target { list: current.is_array() })
}

/// The known name nearest to `name`, when it is near enough to be a typo.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(name, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2.max(name.len() / 4))
        .min()
        .map(|(_, candidate)| candidate)
}

fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (row, left_char) in left.chars().enumerate() {
        let mut current = vec![row + 1; right.len() + 1];
        for (column, right_char) in right.iter().enumerate() {
            let substitution = previous[column] + usize::from(left_char != *right_char);
            current[column + 1] = substitution.min(previous[column + 1] + 1).min(current[column] + 1);
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(kind: EntityKind, path: &str, expected: Result<Target, PathProblem>) {
        assert_eq!(check_path(kind, &FieldPath::parse(path).unwrap()), expected, "{path}");
    }

    #[test]
    fn fields_lists_and_extra() {
        check(EntityKind::Product, "title", Ok(Target { list: false }));
        check(EntityKind::Product, "variants", Ok(Target { list: true }));
        check(EntityKind::Product, "extra.season.start", Ok(Target { list: false }));
        check(EntityKind::Order, "customer.email", Ok(Target { list: false }));
        check(EntityKind::Order, "billing_address.city", Ok(Target { list: false }));
    }

    #[test]
    fn typos_arrays_and_scalars_are_problems() {
        check(
            EntityKind::Product,
            "titel",
            Err(PathProblem::UnknownField {
                parent: String::new(),
                field: "titel".to_string(),
                suggestion: Some("title".to_string()),
            }),
        );
        check(
            EntityKind::Product,
            "variants.price",
            Err(PathProblem::IntoArray { array: "variants".to_string(), inner: "price".to_string() }),
        );
        check(
            EntityKind::Product,
            "title.text",
            Err(PathProblem::IntoScalar { parent: "title".to_string(), found: "a string" }),
        );
    }
}
