//! The mapping language of erpsync: JSONata expressions, lookup tables, filters and mapping tests.
//!
//! A flow's mapping ([`MappingSpec`]) overrides fields of the canonical record, each with a
//! JSONata expression evaluated against the record's JSON, and may filter records out. It is
//! compiled when the configuration loads ([`Mapping::compile`]: every error names the file, the
//! flow, the field and the line and column inside the expression) and applied to each record
//! ([`Mapping::apply`]), with its output validated. Lookup tables ([`LookupTable`]) translate
//! values, with an explicit default or an explicit error for values they do not have; an
//! expression calls the table `tax_codes` as `$lookup_tax_codes(value)`.
//!
//! JSONata is jsonata-core, pinned and wrapped in [`Expression`]: evaluated with limits on time,
//! depth and sequence length, with panics contained and the parsed form cached per thread.
//! This crate is pure: no I/O (the engine reads lookup CSV files and test files and passes their
//! text) and no async (evaluation takes up to its time limit: run it off the async threads).

pub mod expression;
mod json;
pub mod lookup;
pub mod mapping;
pub mod mapping_test;
pub mod position;
mod reads;
mod schema;
pub mod spec;

pub use expression::{Bindings, Expression, ExpressionError, Limits, Phase};
pub use lookup::{LookupError, LookupSpec, LookupTable, Lookups, OnUnknown, WhenUnknown};
pub use mapping::{Applied, CompileContext, Mapping, MappingError, MappingProblem, RecordMappingError};
pub use mapping_test::{Expectation, MappingTestCase, TestFileError, TestResult, parse_tests, run_test};
pub use position::TextPosition;
pub use spec::{FieldPath, MappingSpec, SpecProblem};
