//! Pure conversions between the rows of a file and canonical records: grouped CSV rows and JSON
//! Lines, both ways. No I/O: a document's PDF file is read through a loader the caller passes,
//! and PDFs to write come back as attachments for the caller to store.
//!
//! The CSV column scheme is documented in `mod.rs` and `docs/connectors/files.md`. The rules in
//! short: one column per scalar field; one row per line (variant, order line, price entry,
//! address…), with the record's own columns repeated on every row and read from the first row
//! of the group; lists of plain values `|`-separated; lists of structures that have no flat
//! columns, and anything the flat columns cannot carry exactly, as JSON in a column named after
//! the model field. Empty cells mean "absent"; cells are trimmed.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use csv::StringRecord;
use erpsync_model::{
    Address, AddressKind, Cancellation, Currency, Customer, Document, DocumentLine, EntityKind, Extra, Image, Money,
    OptionValue, Order, OrderLine, OrderParty, OrderStatusChange, OrderTotals, Pdf, PriceEntry, PriceList, Product,
    ProductAttribute, ProductOption, Record, Refund, RefundLine, Shipment, ShipmentLine, ShippingLine, StockLevel,
    TaxLine, Tracking, Variant, Weight,
};
use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

macro_rules! columns {
    ($($variant:ident => $name:literal,)*) => {
        /// Every fixed canonical column name of every entity. Which entity uses which is listed
        /// in [`slots`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Col { $($variant,)* }

        impl Col {
            pub(crate) const COUNT: usize = [$(Col::$variant,)*].len();

            pub(crate) fn name(self) -> &'static str {
                match self { $(Col::$variant => $name,)* }
            }
        }
    };
}

columns! {
    Code => "code",
    Title => "title",
    Description => "description",
    Status => "status",
    Vendor => "vendor",
    ProductType => "product_type",
    Tags => "tags",
    Categories => "categories",
    TaxClass => "tax_class",
    Images => "images",
    Options => "options",
    Attributes => "attributes",
    UpdatedAt => "updated_at",
    Extra => "extra",
    Sku => "sku",
    Barcode => "barcode",
    VariantTitle => "variant_title",
    Price => "price",
    CompareAtPrice => "compare_at_price",
    Cost => "cost",
    Currency => "currency",
    PriceIncludesTax => "price_includes_tax",
    Weight => "weight",
    WeightUnit => "weight_unit",
    TrackInventory => "track_inventory",
    VariantExtra => "variant_extra",
    Location => "location",
    Available => "available",
    OnHand => "on_hand",
    Name => "name",
    CustomerGroup => "customer_group",
    PricesIncludeTax => "prices_include_tax",
    ValidFrom => "valid_from",
    ValidTo => "valid_to",
    MinQuantity => "min_quantity",
    Number => "number",
    Email => "email",
    FirstName => "first_name",
    LastName => "last_name",
    Company => "company",
    Phone => "phone",
    Group => "group",
    TaxNumber => "tax_number",
    AcceptsMarketing => "accepts_marketing",
    AddressKind => "address_kind",
    AddressFirstName => "address_first_name",
    AddressLastName => "address_last_name",
    AddressCompany => "address_company",
    AddressLine1 => "address_line1",
    AddressLine2 => "address_line2",
    AddressCity => "address_city",
    AddressRegion => "address_region",
    AddressPostalCode => "address_postal_code",
    AddressCountry => "address_country",
    AddressPhone => "address_phone",
    AddressIsDefault => "address_is_default",
    PlacedAt => "placed_at",
    Rounding => "rounding",
    CustomerEmail => "customer_email",
    CustomerNumber => "customer_number",
    CustomerFirstName => "customer_first_name",
    CustomerLastName => "customer_last_name",
    CustomerCompany => "customer_company",
    CustomerPhone => "customer_phone",
    BillingKind => "billing_kind",
    BillingFirstName => "billing_first_name",
    BillingLastName => "billing_last_name",
    BillingCompany => "billing_company",
    BillingLine1 => "billing_line1",
    BillingLine2 => "billing_line2",
    BillingCity => "billing_city",
    BillingRegion => "billing_region",
    BillingPostalCode => "billing_postal_code",
    BillingCountry => "billing_country",
    BillingPhone => "billing_phone",
    BillingIsDefault => "billing_is_default",
    ShippingKind => "shipping_kind",
    ShippingFirstName => "shipping_first_name",
    ShippingLastName => "shipping_last_name",
    ShippingCompany => "shipping_company",
    ShippingLine1 => "shipping_line1",
    ShippingLine2 => "shipping_line2",
    ShippingCity => "shipping_city",
    ShippingRegion => "shipping_region",
    ShippingPostalCode => "shipping_postal_code",
    ShippingCountry => "shipping_country",
    ShippingPhone => "shipping_phone",
    ShippingIsDefault => "shipping_is_default",
    FinancialStatus => "financial_status",
    FulfillmentStatus => "fulfillment_status",
    Subtotal => "subtotal",
    DiscountTotal => "discount_total",
    ShippingTotal => "shipping_total",
    TaxTotal => "tax_total",
    Total => "total",
    ShippingMethod => "shipping_method",
    ShippingTitle => "shipping_title",
    ShippingPrice => "shipping_price",
    ShippingLines => "shipping_lines",
    Discounts => "discounts",
    TaxLines => "tax_lines",
    Payments => "payments",
    Cancelled => "cancelled",
    CancelledAt => "cancelled_at",
    CancelReason => "cancel_reason",
    Note => "note",
    SalesChannel => "sales_channel",
    LineId => "line_id",
    LineSku => "line_sku",
    LineTitle => "line_title",
    LineQuantity => "line_quantity",
    LineUnitPrice => "line_unit_price",
    LineDiscount => "line_discount",
    LineTotal => "line_total",
    LineTaxTitle => "line_tax_title",
    LineTaxRate => "line_tax_rate",
    LineTaxAmount => "line_tax_amount",
    LineTaxLines => "line_tax_lines",
    LineExtra => "line_extra",
    OrderNumber => "order_number",
    State => "state",
    ChangedAt => "changed_at",
    ShippedAt => "shipped_at",
    NotifyCustomer => "notify_customer",
    Carrier => "carrier",
    TrackingNumber => "tracking_number",
    TrackingUrl => "tracking_url",
    Tracking => "tracking",
    Kind => "kind",
    IssuedAt => "issued_at",
    PdfUrl => "pdf_url",
    PdfFile => "pdf_file",
    RefundedAt => "refunded_at",
    Amount => "amount",
    ShippingAmount => "shipping_amount",
    Reason => "reason",
    LineAmount => "line_amount",
    LineRestock => "line_restock",
}

/// Families of columns whose names carry data: `extra.<key>`, `attribute.<name>`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dyn {
    Extra,
    VariantExtra,
    LineExtra,
    Attribute,
}

impl Dyn {
    fn prefix(self) -> &'static str {
        match self {
            Dyn::Extra => "extra.",
            Dyn::VariantExtra => "variant_extra.",
            Dyn::LineExtra => "line_extra.",
            Dyn::Attribute => "attribute.",
        }
    }
}

/// One place in an entity's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Fixed(Col),
    Named(Dyn),
    /// `option<N>_name` and `option<N>_value`, N from 1.
    Options,
}

/// A canonical column of a file: what a header means once mapped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Fixed(Col),
    Named(Dyn, String),
    OptionName(u32),
    OptionValue(u32),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Fixed(col) => f.write_str(col.name()),
            Key::Named(family, name) => write!(f, "{}{name}", family.prefix()),
            Key::OptionName(n) => write!(f, "option{n}_name"),
            Key::OptionValue(n) => write!(f, "option{n}_value"),
        }
    }
}

/// The columns of an address, under one prefix (`address_`, `billing_`, `shipping_`).
struct AddressCols {
    kind: Col,
    first_name: Col,
    last_name: Col,
    company: Col,
    line1: Col,
    line2: Col,
    city: Col,
    region: Col,
    postal_code: Col,
    country: Col,
    phone: Col,
    is_default: Col,
}

impl AddressCols {
    fn all(&self) -> [Col; 12] {
        [
            self.kind,
            self.first_name,
            self.last_name,
            self.company,
            self.line1,
            self.line2,
            self.city,
            self.region,
            self.postal_code,
            self.country,
            self.phone,
            self.is_default,
        ]
    }
}

const ADDRESS: AddressCols = AddressCols {
    kind: Col::AddressKind,
    first_name: Col::AddressFirstName,
    last_name: Col::AddressLastName,
    company: Col::AddressCompany,
    line1: Col::AddressLine1,
    line2: Col::AddressLine2,
    city: Col::AddressCity,
    region: Col::AddressRegion,
    postal_code: Col::AddressPostalCode,
    country: Col::AddressCountry,
    phone: Col::AddressPhone,
    is_default: Col::AddressIsDefault,
};

const BILLING: AddressCols = AddressCols {
    kind: Col::BillingKind,
    first_name: Col::BillingFirstName,
    last_name: Col::BillingLastName,
    company: Col::BillingCompany,
    line1: Col::BillingLine1,
    line2: Col::BillingLine2,
    city: Col::BillingCity,
    region: Col::BillingRegion,
    postal_code: Col::BillingPostalCode,
    country: Col::BillingCountry,
    phone: Col::BillingPhone,
    is_default: Col::BillingIsDefault,
};

const SHIPPING: AddressCols = AddressCols {
    kind: Col::ShippingKind,
    first_name: Col::ShippingFirstName,
    last_name: Col::ShippingLastName,
    company: Col::ShippingCompany,
    line1: Col::ShippingLine1,
    line2: Col::ShippingLine2,
    city: Col::ShippingCity,
    region: Col::ShippingRegion,
    postal_code: Col::ShippingPostalCode,
    country: Col::ShippingCountry,
    phone: Col::ShippingPhone,
    is_default: Col::ShippingIsDefault,
};

const fn address_slots(cols: &AddressCols) -> [Slot; 12] {
    [
        Slot::Fixed(cols.kind),
        Slot::Fixed(cols.first_name),
        Slot::Fixed(cols.last_name),
        Slot::Fixed(cols.company),
        Slot::Fixed(cols.line1),
        Slot::Fixed(cols.line2),
        Slot::Fixed(cols.city),
        Slot::Fixed(cols.region),
        Slot::Fixed(cols.postal_code),
        Slot::Fixed(cols.country),
        Slot::Fixed(cols.phone),
        Slot::Fixed(cols.is_default),
    ]
}

const fn concat_slots<const N: usize>(parts: &[&[Slot]]) -> [Slot; N] {
    let mut out = [Slot::Options; N];
    let mut at = 0;
    let mut part = 0;
    while part < parts.len() {
        let mut index = 0;
        while index < parts[part].len() {
            out[at] = parts[part][index];
            at += 1;
            index += 1;
        }
        part += 1;
    }
    assert!(at == N, "slot list length");
    out
}

use Slot::{Fixed as F, Named as D};

const PRODUCT_SLOTS: &[Slot] = &[
    F(Col::Code),
    F(Col::Sku),
    F(Col::Title),
    F(Col::VariantTitle),
    F(Col::Description),
    F(Col::Status),
    F(Col::Vendor),
    F(Col::ProductType),
    F(Col::Tags),
    F(Col::Categories),
    F(Col::TaxClass),
    F(Col::Barcode),
    F(Col::Price),
    F(Col::CompareAtPrice),
    F(Col::Cost),
    F(Col::Currency),
    F(Col::PriceIncludesTax),
    F(Col::Weight),
    F(Col::WeightUnit),
    F(Col::TrackInventory),
    Slot::Options,
    F(Col::Images),
    F(Col::Options),
    D(Dyn::Attribute),
    F(Col::Attributes),
    F(Col::UpdatedAt),
    D(Dyn::Extra),
    F(Col::Extra),
    D(Dyn::VariantExtra),
    F(Col::VariantExtra),
];

const STOCK_LEVEL_SLOTS: &[Slot] = &[
    F(Col::Sku),
    F(Col::Location),
    F(Col::Available),
    F(Col::OnHand),
    F(Col::UpdatedAt),
    D(Dyn::Extra),
    F(Col::Extra),
];

const PRICE_LIST_SLOTS: &[Slot] = &[
    F(Col::Code),
    F(Col::Name),
    F(Col::Currency),
    F(Col::CustomerGroup),
    F(Col::PricesIncludeTax),
    F(Col::ValidFrom),
    F(Col::ValidTo),
    F(Col::UpdatedAt),
    D(Dyn::Extra),
    F(Col::Extra),
    F(Col::Sku),
    F(Col::MinQuantity),
    F(Col::Price),
];

const CUSTOMER_HEAD: &[Slot] = &[
    F(Col::Number),
    F(Col::Email),
    F(Col::FirstName),
    F(Col::LastName),
    F(Col::Company),
    F(Col::Phone),
    F(Col::Group),
    F(Col::TaxNumber),
    F(Col::AcceptsMarketing),
    F(Col::UpdatedAt),
    D(Dyn::Extra),
    F(Col::Extra),
];
const CUSTOMER_SLOTS: &[Slot] = &concat_slots::<24>(&[CUSTOMER_HEAD, &address_slots(&ADDRESS)]);

const ORDER_HEAD: &[Slot] = &[
    F(Col::Number),
    F(Col::PlacedAt),
    F(Col::UpdatedAt),
    F(Col::Currency),
    F(Col::PricesIncludeTax),
    F(Col::Rounding),
    F(Col::FinancialStatus),
    F(Col::FulfillmentStatus),
    F(Col::CustomerEmail),
    F(Col::CustomerNumber),
    F(Col::CustomerFirstName),
    F(Col::CustomerLastName),
    F(Col::CustomerCompany),
    F(Col::CustomerPhone),
    F(Col::CustomerGroup),
];
const ORDER_MIDDLE: &[Slot] = &[
    F(Col::Subtotal),
    F(Col::DiscountTotal),
    F(Col::ShippingTotal),
    F(Col::TaxTotal),
    F(Col::Total),
    F(Col::ShippingMethod),
    F(Col::ShippingTitle),
    F(Col::ShippingPrice),
    F(Col::ShippingLines),
    F(Col::Discounts),
    F(Col::TaxLines),
    F(Col::Payments),
    F(Col::Cancelled),
    F(Col::CancelledAt),
    F(Col::CancelReason),
    F(Col::Note),
    F(Col::SalesChannel),
    D(Dyn::Extra),
    F(Col::Extra),
    F(Col::LineId),
    F(Col::LineSku),
    F(Col::LineTitle),
    F(Col::LineQuantity),
    F(Col::LineUnitPrice),
    F(Col::LineDiscount),
    F(Col::LineTotal),
    F(Col::LineTaxTitle),
    F(Col::LineTaxRate),
    F(Col::LineTaxAmount),
    F(Col::LineTaxLines),
    D(Dyn::LineExtra),
    F(Col::LineExtra),
];
const ORDER_SLOTS: &[Slot] =
    &concat_slots::<71>(&[ORDER_HEAD, &address_slots(&BILLING), &address_slots(&SHIPPING), ORDER_MIDDLE]);

const ORDER_STATUS_SLOTS: &[Slot] = &[
    F(Col::OrderNumber),
    F(Col::State),
    F(Col::FinancialStatus),
    F(Col::FulfillmentStatus),
    F(Col::ChangedAt),
    F(Col::Note),
    D(Dyn::Extra),
    F(Col::Extra),
];

const SHIPMENT_SLOTS: &[Slot] = &[
    F(Col::Number),
    F(Col::OrderNumber),
    F(Col::ShippedAt),
    F(Col::Location),
    F(Col::NotifyCustomer),
    F(Col::Carrier),
    F(Col::TrackingNumber),
    F(Col::TrackingUrl),
    F(Col::Tracking),
    D(Dyn::Extra),
    F(Col::Extra),
    F(Col::LineSku),
    F(Col::LineQuantity),
];

const DOCUMENT_SLOTS: &[Slot] = &[
    F(Col::Kind),
    F(Col::Number),
    F(Col::OrderNumber),
    F(Col::IssuedAt),
    F(Col::Currency),
    F(Col::Subtotal),
    F(Col::DiscountTotal),
    F(Col::ShippingTotal),
    F(Col::TaxTotal),
    F(Col::Total),
    F(Col::PdfUrl),
    F(Col::PdfFile),
    D(Dyn::Extra),
    F(Col::Extra),
    F(Col::LineSku),
    F(Col::LineTitle),
    F(Col::LineQuantity),
    F(Col::LineUnitPrice),
    F(Col::LineTotal),
];

const REFUND_SLOTS: &[Slot] = &[
    F(Col::Number),
    F(Col::OrderNumber),
    F(Col::RefundedAt),
    F(Col::Currency),
    F(Col::Amount),
    F(Col::ShippingAmount),
    F(Col::Reason),
    D(Dyn::Extra),
    F(Col::Extra),
    F(Col::LineSku),
    F(Col::LineQuantity),
    F(Col::LineAmount),
    F(Col::LineRestock),
];

/// The columns of an entity, in the order the sink writes them.
pub(crate) fn slots(entity: EntityKind) -> &'static [Slot] {
    match entity {
        EntityKind::Product => PRODUCT_SLOTS,
        EntityKind::PriceList => PRICE_LIST_SLOTS,
        EntityKind::StockLevel => STOCK_LEVEL_SLOTS,
        EntityKind::Customer => CUSTOMER_SLOTS,
        EntityKind::Order => ORDER_SLOTS,
        EntityKind::OrderStatus => ORDER_STATUS_SLOTS,
        EntityKind::Shipment => SHIPMENT_SLOTS,
        EntityKind::Document => DOCUMENT_SLOTS,
        EntityKind::Refund => REFUND_SLOTS,
    }
}

/// Columns a file of the entity must have: each inner list is "one of these".
fn required_columns(entity: EntityKind) -> &'static [&'static [Col]] {
    match entity {
        EntityKind::Product => &[&[Col::Sku]],
        EntityKind::PriceList => &[&[Col::Code]],
        EntityKind::StockLevel => &[&[Col::Sku], &[Col::Location], &[Col::Available]],
        EntityKind::Customer => &[&[Col::Number, Col::Email]],
        EntityKind::Order | EntityKind::Shipment | EntityKind::Document | EntityKind::Refund => &[&[Col::Number]],
        EntityKind::OrderStatus => &[&[Col::OrderNumber]],
    }
}

/// What a column name means for an entity: a fixed column (ASCII case ignored), a named family
/// (`extra.<key>`, the key keeps its case), an option column, or nothing.
pub(crate) fn canonical_column(entity: EntityKind, name: &str) -> Option<Key> {
    let lower = name.to_ascii_lowercase();
    for slot in slots(entity) {
        match *slot {
            Slot::Fixed(col) if col.name() == lower => return Some(Key::Fixed(col)),
            Slot::Named(family) if lower.starts_with(family.prefix()) && lower.len() > family.prefix().len() => {
                // The prefix is ASCII, so its length in bytes is the same in `name`.
                return Some(Key::Named(family, name[family.prefix().len()..].to_string()));
            }
            Slot::Options => {
                if let Some(key) = option_column(&lower) {
                    return Some(key);
                }
            }
            _ => {}
        }
    }
    None
}

fn option_column(lower: &str) -> Option<Key> {
    let rest = lower.strip_prefix("option")?;
    let (number, part) = rest.split_once('_')?;
    if number.is_empty() || !number.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let number: u32 = number.parse().ok().filter(|n| *n >= 1)?;
    match part {
        "name" => Some(Key::OptionName(number)),
        "value" => Some(Key::OptionValue(number)),
        _ => None,
    }
}

/// The column names of an entity, for messages.
pub(crate) fn column_names(entity: EntityKind) -> Vec<String> {
    slots(entity)
        .iter()
        .map(|slot| match slot {
            Slot::Fixed(col) => col.name().to_string(),
            Slot::Named(family) => format!("{}<name>", family.prefix()),
            Slot::Options => "option<N>_name, option<N>_value".to_string(),
        })
        .collect()
}

/// Where a column goes in a written file: by slot, then option number and part. Columns of one
/// named family keep the order in which the batch first used them (a stable sort).
pub(crate) fn column_rank(entity: EntityKind, key: &Key) -> (usize, u32, u8) {
    let slots = slots(entity);
    let position = |wanted: Slot| slots.iter().position(|slot| *slot == wanted).unwrap_or(usize::MAX);
    match key {
        Key::Fixed(col) => (position(Slot::Fixed(*col)), 0, 0),
        Key::Named(family, _) => (position(Slot::Named(*family)), 0, 0),
        Key::OptionName(n) => (position(Slot::Options), *n, 0),
        Key::OptionValue(n) => (position(Slot::Options), *n, 1),
    }
}

/// How numbers are written in cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CellFormat {
    /// `12,5` instead of `12.5`.
    pub decimal_comma: bool,
}

impl CellFormat {
    fn parse_decimal(&self, text: &str) -> Result<Decimal, String> {
        let normalized = if self.decimal_comma { text.replace(',', ".") } else { text.to_string() };
        Decimal::from_str(&normalized)
            .or_else(|_| Decimal::from_scientific(&normalized))
            .map_err(|_| format!("{text:?} is not a decimal number"))
    }

    fn write_decimal(&self, value: Decimal) -> String {
        let text = value.normalize().to_string();
        if self.decimal_comma { text.replace('.', ",") } else { text }
    }
}

/// A problem with a row of a file, in the words of the file: `row 7: column "price": "12,5x"
/// is not a decimal number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub row: u64,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {}: {}", self.row, self.message)
    }
}

/// One data row of a CSV file, decoded.
#[derive(Debug, Clone)]
pub(crate) struct FileRow {
    /// The header is row 1.
    pub number: u64,
    pub cells: StringRecord,
}

/// What each column of one file means, resolved once from its header.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    entity: EntityKind,
    /// The headers as the file writes them (trimmed).
    headers: Vec<String>,
    /// Canonical name per header, when the column mapping renamed it.
    renamed: Vec<Option<String>>,
    fixed: Vec<Option<usize>>,
    named: Vec<(Dyn, String, usize)>,
    /// Option number, name column, value column; sorted by number.
    options: Vec<(u32, Option<usize>, Option<usize>)>,
    /// Columns the scheme does not name: kept in `extra` under their header.
    unknown: Vec<(String, usize)>,
}

impl Layout {
    /// Resolves a header row. `header_to_column` is the configured column mapping. Fails when
    /// two headers mean the same column or a required column is missing.
    pub(crate) fn new(
        entity: EntityKind,
        headers: Vec<String>,
        header_to_column: &HashMap<String, String>,
    ) -> Result<Layout, String> {
        let mut layout = Layout {
            entity,
            renamed: vec![None; headers.len()],
            headers,
            fixed: vec![None; Col::COUNT],
            named: Vec::new(),
            options: Vec::new(),
            unknown: Vec::new(),
        };
        let mut seen: HashMap<Key, usize> = HashMap::new();
        for index in 0..layout.headers.len() {
            let header = layout.headers[index].clone();
            let header = header.as_str();
            if header.is_empty() {
                // Spreadsheets leave empty trailing columns; they carry nothing.
                continue;
            }
            let column = header_to_column.get(header).map(String::as_str).unwrap_or(header);
            let Some(key) = canonical_column(entity, column) else {
                layout.unknown.push((header.to_string(), index));
                continue;
            };
            if column != header {
                layout.renamed[index] = Some(key.to_string());
            }
            if let Some(previous) = seen.insert(key.clone(), index) {
                return Err(format!(
                    "columns {:?} and {:?} both mean {:?}: keep one (see the column mapping in entities.{entity}.columns)",
                    layout.headers[previous],
                    header,
                    key.to_string()
                ));
            }
            match key {
                Key::Fixed(col) => layout.fixed[col as usize] = Some(index),
                Key::Named(family, name) => layout.named.push((family, name, index)),
                Key::OptionName(n) | Key::OptionValue(n) => {
                    let slot = match layout.options.iter().position(|(number, _, _)| *number == n) {
                        Some(position) => position,
                        None => {
                            layout.options.push((n, None, None));
                            layout.options.len() - 1
                        }
                    };
                    if matches!(key, Key::OptionName(_)) {
                        layout.options[slot].1 = Some(index);
                    } else {
                        layout.options[slot].2 = Some(index);
                    }
                }
            }
        }
        layout.options.sort_by_key(|(number, _, _)| *number);
        for any_of in required_columns(entity) {
            if !any_of.iter().any(|col| layout.fixed[*col as usize].is_some()) {
                let wanted: Vec<&str> = any_of.iter().map(|col| col.name()).collect();
                let found: Vec<&str> = layout.headers.iter().take(30).map(String::as_str).collect();
                return Err(format!(
                    "the header has no column {} (found: {}): rename the file's column in entities.{entity}.columns",
                    wanted.iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(" or "),
                    found.join(", ")
                ));
            }
        }
        Ok(layout)
    }

    pub(crate) fn width(&self) -> usize {
        self.headers.len()
    }

    fn cell<'r>(&self, cells: &'r StringRecord, col: Col) -> Option<&'r str> {
        let index = self.fixed[col as usize]?;
        cells.get(index).map(str::trim).filter(|text| !text.is_empty())
    }

    /// The key that makes adjacent rows one record, `None` for a row that stands alone.
    pub(crate) fn group_key(&self, cells: &StringRecord) -> Option<String> {
        match self.entity {
            EntityKind::Product | EntityKind::PriceList => self.cell(cells, Col::Code).map(str::to_string),
            EntityKind::Customer => self
                .cell(cells, Col::Number)
                .map(str::to_string)
                .or_else(|| self.cell(cells, Col::Email).map(str::to_lowercase)),
            EntityKind::Order | EntityKind::Shipment | EntityKind::Refund => {
                self.cell(cells, Col::Number).map(str::to_string)
            }
            EntityKind::Document => {
                let number = self.cell(cells, Col::Number)?;
                let kind = self.cell(cells, Col::Kind).map(str::to_lowercase);
                Some(format!("{}:{number}", kind.as_deref().unwrap_or("invoice")))
            }
            EntityKind::StockLevel | EntityKind::OrderStatus => None,
        }
    }

    /// The natural key a row would give its record, as far as the cells tell without parsing:
    /// the source id of a row that cannot be parsed.
    pub(crate) fn row_key(&self, cells: &StringRecord) -> Option<String> {
        match self.entity {
            EntityKind::Product => self.group_key(cells).or_else(|| self.cell(cells, Col::Sku).map(str::to_string)),
            EntityKind::StockLevel => {
                let sku = self.cell(cells, Col::Sku)?;
                Some(format!("{sku}@{}", self.cell(cells, Col::Location).unwrap_or_default()))
            }
            _ => self.group_key(cells),
        }
    }

    /// The rows as the file has them, header → cell, for a dead letter.
    pub(crate) fn raw_rows(&self, rows: &[FileRow]) -> Value {
        let objects: Vec<Value> = rows.iter().map(|row| self.raw_row(&row.cells)).collect();
        match <[Value; 1]>::try_from(objects) {
            Ok([single]) => single,
            Err(objects) => Value::Array(objects),
        }
    }

    pub(crate) fn raw_row(&self, cells: &StringRecord) -> Value {
        let mut object = Map::new();
        for (index, cell) in cells.iter().enumerate() {
            let header = match self.headers.get(index) {
                Some(header) if !header.is_empty() && !object.contains_key(header) => header.clone(),
                Some(header) if !header.is_empty() => format!("{header} (column {})", index + 1),
                _ => format!("column {}", index + 1),
            };
            object.insert(header, Value::String(cell.to_string()));
        }
        Value::Object(object)
    }

    /// `column "price"`, or `column "Preis" (price)` when the mapping renamed it.
    pub(crate) fn describe_column(&self, index: usize) -> String {
        let header = self.headers.get(index).map(String::as_str).unwrap_or("");
        match self.renamed.get(index).and_then(Option::as_ref) {
            Some(canonical) => format!("column {header:?} ({canonical})"),
            None => format!("column {header:?}"),
        }
    }
}

/// Reads the file named in a document's `pdf_file` column.
pub(crate) type PdfLoader<'a> = &'a mut dyn FnMut(&str) -> Result<Vec<u8>, String>;

/// Builds one record from the rows of one group. The record is not validated here.
pub(crate) fn record_from_rows(
    layout: &Layout,
    format: CellFormat,
    rows: &[FileRow],
    load_pdf: PdfLoader<'_>,
) -> Result<Record, FieldError> {
    let cells: Vec<Cells<'_>> = rows.iter().map(|row| Cells { layout, format, row }).collect();
    let Some(first) = cells.first() else {
        return Err(FieldError { row: 0, message: "no rows".into() });
    };
    Ok(match layout.entity {
        EntityKind::Product => Record::Product(product_from_rows(first, &cells)?),
        EntityKind::PriceList => Record::PriceList(price_list_from_rows(first, &cells)?),
        EntityKind::StockLevel => Record::StockLevel(stock_level_from_row(first)?),
        EntityKind::Customer => Record::Customer(customer_from_rows(first, &cells)?),
        EntityKind::Order => Record::Order(order_from_rows(first, &cells)?),
        EntityKind::OrderStatus => Record::OrderStatus(order_status_from_row(first)?),
        EntityKind::Shipment => Record::Shipment(shipment_from_rows(first, &cells)?),
        EntityKind::Document => Record::Document(document_from_rows(first, &cells, load_pdf)?),
        EntityKind::Refund => Record::Refund(refund_from_rows(first, &cells)?),
    })
}

/// Typed access to the cells of one row.
struct Cells<'a> {
    layout: &'a Layout,
    format: CellFormat,
    row: &'a FileRow,
}

impl<'a> Cells<'a> {
    fn at(&self, index: usize) -> Option<&'a str> {
        self.row.cells.get(index).map(str::trim).filter(|text| !text.is_empty())
    }

    fn text(&self, col: Col) -> Option<&'a str> {
        self.layout.fixed[col as usize].and_then(|index| self.at(index))
    }

    fn string(&self, col: Col) -> String {
        self.text(col).unwrap_or_default().to_string()
    }

    fn optional(&self, col: Col) -> Option<String> {
        self.text(col).map(str::to_string)
    }

    fn any(&self, cols: &[Col]) -> bool {
        cols.iter().any(|col| self.text(*col).is_some())
    }

    fn any_named(&self, family: Dyn) -> bool {
        self.layout.named.iter().any(|(f, _, index)| *f == family && self.at(*index).is_some())
    }

    fn fail(&self, col: Col, message: impl fmt::Display) -> FieldError {
        let column = match self.layout.fixed[col as usize] {
            Some(index) => self.layout.describe_column(index),
            None => format!("column {:?}", col.name()),
        };
        FieldError { row: self.row.number, message: format!("{column}: {message}") }
    }

    fn decimal(&self, col: Col) -> Result<Option<Decimal>, FieldError> {
        match self.text(col) {
            None => Ok(None),
            Some(text) => self.format.parse_decimal(text).map(Some).map_err(|message| self.fail(col, message)),
        }
    }

    fn decimal_or(&self, col: Col, default: Decimal) -> Result<Decimal, FieldError> {
        Ok(self.decimal(col)?.unwrap_or(default))
    }

    fn required_decimal(&self, col: Col) -> Result<Decimal, FieldError> {
        self.decimal(col)?.ok_or_else(|| self.fail(col, "is required"))
    }

    fn boolean(&self, col: Col) -> Result<bool, FieldError> {
        let Some(text) = self.text(col) else { return Ok(false) };
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Ok(true),
            "false" | "no" | "n" | "0" => Ok(false),
            _ => Err(self.fail(col, format!("{text:?} is not a yes/no value: expected true or false"))),
        }
    }

    fn datetime(&self, col: Col) -> Result<Option<DateTime<Utc>>, FieldError> {
        match self.text(col) {
            None => Ok(None),
            Some(text) => parse_datetime(text).map(Some).map_err(|message| self.fail(col, message)),
        }
    }

    /// A snake_case enum value (`active`, `partially_paid`), case ignored.
    fn choice<T: DeserializeOwned>(&self, col: Col) -> Result<Option<T>, FieldError> {
        let Some(text) = self.text(col) else { return Ok(None) };
        serde_json::from_value(Value::String(text.to_ascii_lowercase()))
            .map(Some)
            .map_err(|error| self.fail(col, format!("{text:?}: {error}")))
    }

    fn currency(&self, col: Col) -> Result<Option<Currency>, FieldError> {
        match self.text(col) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|error| self.fail(col, error)),
        }
    }

    fn required_currency(&self, col: Col) -> Result<Currency, FieldError> {
        self.currency(col)?.ok_or_else(|| self.fail(col, "is required"))
    }

    fn json<T: DeserializeOwned>(&self, col: Col) -> Result<Option<T>, FieldError> {
        match self.text(col) {
            None => Ok(None),
            Some(text) => {
                serde_json::from_str(text).map(Some).map_err(|error| self.fail(col, format!("invalid JSON: {error}")))
            }
        }
    }

    fn list(&self, col: Col) -> Vec<String> {
        self.text(col).map(split_list).unwrap_or_default()
    }

    /// The `extra` JSON column, then `<family>.<key>` columns, then (for the record's own
    /// extra) the columns the scheme does not name.
    fn extra(&self, json: Col, family: Dyn, with_unknown: bool) -> Result<Extra, FieldError> {
        let mut extra = Extra(self.json::<Map<String, Value>>(json)?.unwrap_or_default());
        for (f, name, index) in &self.layout.named {
            if *f == family
                && let Some(value) = self.at(*index)
            {
                extra.insert(name.clone(), Value::String(value.to_string()));
            }
        }
        if with_unknown {
            for (header, index) in &self.layout.unknown {
                if let Some(value) = self.at(*index)
                    && extra.get(header).is_none()
                {
                    extra.insert(header.clone(), Value::String(value.to_string()));
                }
            }
        }
        Ok(extra)
    }

    fn address(&self, cols: &AddressCols, default_kind: AddressKind) -> Result<Option<Address>, FieldError> {
        if !self.any(&cols.all()) {
            return Ok(None);
        }
        Ok(Some(Address {
            kind: self.choice(cols.kind)?.unwrap_or(default_kind),
            first_name: self.optional(cols.first_name),
            last_name: self.optional(cols.last_name),
            company: self.optional(cols.company),
            line1: self.string(cols.line1),
            line2: self.optional(cols.line2),
            city: self.string(cols.city),
            region: self.optional(cols.region),
            postal_code: self.optional(cols.postal_code),
            country: self.string(cols.country),
            phone: self.optional(cols.phone),
            is_default: self.boolean(cols.is_default)?,
        }))
    }

    fn totals(&self) -> Result<OrderTotals, FieldError> {
        Ok(OrderTotals {
            subtotal: self.decimal_or(Col::Subtotal, Decimal::ZERO)?,
            discount_total: self.decimal_or(Col::DiscountTotal, Decimal::ZERO)?,
            shipping_total: self.decimal_or(Col::ShippingTotal, Decimal::ZERO)?,
            tax_total: self.decimal_or(Col::TaxTotal, Decimal::ZERO)?,
            total: self.decimal_or(Col::Total, Decimal::ZERO)?,
        })
    }

    /// A list given either as JSON in `json` or as one item in flat columns, never both.
    fn json_or_flat<T: DeserializeOwned>(
        &self,
        json: Col,
        flat: &[Col],
        build: impl FnOnce() -> Result<T, FieldError>,
    ) -> Result<Vec<T>, FieldError> {
        let listed = self.json::<Vec<T>>(json)?;
        let has_flat = self.any(flat);
        match (listed, has_flat) {
            (Some(_), true) => {
                let names: Vec<&str> = flat.iter().map(|col| col.name()).collect();
                Err(self.fail(json, format!("is set together with {}: use one or the other", names.join(", "))))
            }
            (Some(listed), false) => Ok(listed),
            (None, true) => Ok(vec![build()?]),
            (None, false) => Ok(Vec::new()),
        }
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split('|').map(str::trim).filter(|part| !part.is_empty()).map(str::to_string).collect()
}

/// RFC 3339; a time without zone (`2024-12-31 23:59:00`) or a bare date is taken as UTC.
fn parse_datetime(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(at) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(at.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN).and_utc());
    }
    Err(format!("{text:?} is not a date and time: expected RFC 3339 such as 2024-12-31T23:59:00Z"))
}

const VARIANT_COLUMNS: &[Col] = &[
    Col::Sku,
    Col::Barcode,
    Col::VariantTitle,
    Col::Price,
    Col::CompareAtPrice,
    Col::Cost,
    Col::PriceIncludesTax,
    Col::Weight,
    Col::WeightUnit,
    Col::TrackInventory,
    Col::VariantExtra,
];

fn product_from_rows(first: &Cells<'_>, rows: &[Cells<'_>]) -> Result<Product, FieldError> {
    let mut variants = Vec::with_capacity(rows.len());
    for row in rows {
        let has_options =
            first.layout.options.iter().any(|(_, _, value)| value.and_then(|index| row.at(index)).is_some());
        if row.any(VARIANT_COLUMNS) || has_options || row.any_named(Dyn::VariantExtra) {
            variants.push(variant_from_row(row, first)?);
        }
    }
    let mut code = first.string(Col::Code);
    if code.is_empty()
        && let Some(variant) = variants.first()
    {
        code = variant.sku.clone();
    }
    let options = match first.json::<Vec<ProductOption>>(Col::Options)? {
        Some(options) => options,
        None => derive_options(&variants),
    };
    let images = match first.text(Col::Images) {
        None => Vec::new(),
        Some(text) if text.starts_with('[') => first.json(Col::Images)?.unwrap_or_default(),
        Some(text) => split_list(text)
            .into_iter()
            .enumerate()
            .map(|(position, url)| Image { url, position: position as u32, ..Image::default() })
            .collect(),
    };
    let mut attributes = first.json::<Vec<ProductAttribute>>(Col::Attributes)?.unwrap_or_default();
    for (family, name, index) in &first.layout.named {
        if *family == Dyn::Attribute
            && let Some(value) = first.at(*index)
        {
            attributes.push(ProductAttribute { name: name.clone(), value: value.to_string() });
        }
    }
    Ok(Product {
        code,
        title: first.string(Col::Title),
        description: first.optional(Col::Description),
        status: first.choice(Col::Status)?.unwrap_or_default(),
        vendor: first.optional(Col::Vendor),
        product_type: first.optional(Col::ProductType),
        tags: first.list(Col::Tags),
        categories: first.list(Col::Categories),
        options,
        variants,
        images,
        attributes,
        tax_class: first.optional(Col::TaxClass),
        updated_at: first.datetime(Col::UpdatedAt)?,
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn variant_from_row(row: &Cells<'_>, first: &Cells<'_>) -> Result<Variant, FieldError> {
    let currency = row.currency(Col::Currency)?;
    let money = |col: Col| -> Result<Option<Money>, FieldError> {
        match (row.decimal(col)?, currency) {
            (None, _) => Ok(None),
            (Some(amount), Some(currency)) => Ok(Some(Money::new(amount, currency))),
            (Some(_), None) => Err(row.fail(Col::Currency, format!("is required when {} is set", col.name()))),
        }
    };
    let mut options = Vec::new();
    for (_, name, value) in &row.layout.options {
        let value = value.and_then(|index| row.at(index));
        // Shopify-style files name the option on the first row of a product only.
        let name = name.and_then(|index| row.at(index).or_else(|| first.at(index)));
        if value.is_some() || name.is_some() {
            options.push(OptionValue {
                option: name.unwrap_or_default().to_string(),
                value: value.unwrap_or_default().to_string(),
            });
        }
    }
    Ok(Variant {
        sku: row.string(Col::Sku),
        title: row.optional(Col::VariantTitle),
        barcode: row.optional(Col::Barcode),
        options,
        price: money(Col::Price)?,
        compare_at_price: money(Col::CompareAtPrice)?,
        cost: money(Col::Cost)?,
        price_includes_tax: row.boolean(Col::PriceIncludesTax)?,
        weight: row.decimal(Col::Weight)?.map(|value| Weight { value, unit: row.string(Col::WeightUnit) }),
        track_inventory: row.boolean(Col::TrackInventory)?,
        extra: row.extra(Col::VariantExtra, Dyn::VariantExtra, false)?,
    })
}

/// A product's option axes as its variants use them: names and values in order of first use.
fn derive_options(variants: &[Variant]) -> Vec<ProductOption> {
    let mut options: Vec<ProductOption> = Vec::new();
    for option_value in variants.iter().flat_map(|variant| &variant.options) {
        match options.iter_mut().find(|option| option.name == option_value.option) {
            Some(option) => {
                if !option.values.contains(&option_value.value) {
                    option.values.push(option_value.value.clone());
                }
            }
            None => options
                .push(ProductOption { name: option_value.option.clone(), values: vec![option_value.value.clone()] }),
        }
    }
    options
}

fn price_list_from_rows(first: &Cells<'_>, rows: &[Cells<'_>]) -> Result<PriceList, FieldError> {
    let mut entries = Vec::new();
    for row in rows {
        if row.any(&[Col::Sku, Col::MinQuantity, Col::Price]) {
            entries.push(PriceEntry {
                sku: row.string(Col::Sku),
                min_quantity: row.decimal_or(Col::MinQuantity, Decimal::ONE)?,
                price: row.required_decimal(Col::Price)?,
            });
        }
    }
    Ok(PriceList {
        code: first.string(Col::Code),
        name: first.string(Col::Name),
        currency: first.required_currency(Col::Currency)?,
        customer_group: first.optional(Col::CustomerGroup),
        prices_include_tax: first.boolean(Col::PricesIncludeTax)?,
        valid_from: first.datetime(Col::ValidFrom)?,
        valid_to: first.datetime(Col::ValidTo)?,
        entries,
        updated_at: first.datetime(Col::UpdatedAt)?,
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn stock_level_from_row(row: &Cells<'_>) -> Result<StockLevel, FieldError> {
    Ok(StockLevel {
        sku: row.string(Col::Sku),
        location: row.string(Col::Location),
        available: row.required_decimal(Col::Available)?,
        on_hand: row.decimal(Col::OnHand)?,
        updated_at: row.datetime(Col::UpdatedAt)?,
        extra: row.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn customer_from_rows(first: &Cells<'_>, rows: &[Cells<'_>]) -> Result<Customer, FieldError> {
    let mut addresses = Vec::new();
    for row in rows {
        if let Some(address) = row.address(&ADDRESS, AddressKind::Both)? {
            addresses.push(address);
        }
    }
    Ok(Customer {
        number: first.optional(Col::Number),
        email: first.optional(Col::Email),
        first_name: first.optional(Col::FirstName),
        last_name: first.optional(Col::LastName),
        company: first.optional(Col::Company),
        phone: first.optional(Col::Phone),
        group: first.optional(Col::Group),
        tax_number: first.optional(Col::TaxNumber),
        accepts_marketing: first.boolean(Col::AcceptsMarketing)?,
        addresses,
        updated_at: first.datetime(Col::UpdatedAt)?,
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

const ORDER_LINE_COLUMNS: &[Col] = &[
    Col::LineId,
    Col::LineSku,
    Col::LineTitle,
    Col::LineQuantity,
    Col::LineUnitPrice,
    Col::LineDiscount,
    Col::LineTotal,
    Col::LineTaxTitle,
    Col::LineTaxRate,
    Col::LineTaxAmount,
    Col::LineTaxLines,
    Col::LineExtra,
];

fn order_from_rows(first: &Cells<'_>, rows: &[Cells<'_>]) -> Result<Order, FieldError> {
    let mut lines = Vec::new();
    for row in rows {
        if row.any(ORDER_LINE_COLUMNS) || row.any_named(Dyn::LineExtra) {
            let tax_lines = row.json_or_flat(
                Col::LineTaxLines,
                &[Col::LineTaxTitle, Col::LineTaxRate, Col::LineTaxAmount],
                || {
                    Ok(TaxLine {
                        title: row.string(Col::LineTaxTitle),
                        rate: row.decimal_or(Col::LineTaxRate, Decimal::ZERO)?,
                        amount: row.decimal_or(Col::LineTaxAmount, Decimal::ZERO)?,
                    })
                },
            )?;
            lines.push(OrderLine {
                line_id: row.optional(Col::LineId),
                sku: row.string(Col::LineSku),
                title: row.string(Col::LineTitle),
                quantity: row.decimal_or(Col::LineQuantity, Decimal::ZERO)?,
                unit_price: row.decimal_or(Col::LineUnitPrice, Decimal::ZERO)?,
                discount: row.decimal_or(Col::LineDiscount, Decimal::ZERO)?,
                tax_lines,
                total: row.decimal_or(Col::LineTotal, Decimal::ZERO)?,
                extra: row.extra(Col::LineExtra, Dyn::LineExtra, false)?,
            });
        }
    }
    let shipping_lines = first.json_or_flat(
        Col::ShippingLines,
        &[Col::ShippingMethod, Col::ShippingTitle, Col::ShippingPrice],
        || {
            Ok(ShippingLine {
                method: first.string(Col::ShippingMethod),
                title: first.string(Col::ShippingTitle),
                price: first.decimal_or(Col::ShippingPrice, Decimal::ZERO)?,
                tax_lines: Vec::new(),
            })
        },
    )?;
    let cancellation = if first.boolean(Col::Cancelled)? || first.any(&[Col::CancelledAt, Col::CancelReason]) {
        Some(Cancellation {
            cancelled_at: first.datetime(Col::CancelledAt)?,
            reason: first.optional(Col::CancelReason),
        })
    } else {
        None
    };
    Ok(Order {
        number: first.string(Col::Number),
        placed_at: first.datetime(Col::PlacedAt)?,
        updated_at: first.datetime(Col::UpdatedAt)?,
        currency: first.required_currency(Col::Currency)?,
        prices_include_tax: first.boolean(Col::PricesIncludeTax)?,
        rounding: first.choice(Col::Rounding)?.unwrap_or_default(),
        customer: OrderParty {
            email: first.optional(Col::CustomerEmail),
            number: first.optional(Col::CustomerNumber),
            first_name: first.optional(Col::CustomerFirstName),
            last_name: first.optional(Col::CustomerLastName),
            company: first.optional(Col::CustomerCompany),
            phone: first.optional(Col::CustomerPhone),
            group: first.optional(Col::CustomerGroup),
        },
        billing_address: first.address(&BILLING, AddressKind::Billing)?,
        shipping_address: first.address(&SHIPPING, AddressKind::Shipping)?,
        lines,
        discounts: first.json(Col::Discounts)?.unwrap_or_default(),
        shipping_lines,
        tax_lines: first.json(Col::TaxLines)?.unwrap_or_default(),
        totals: first.totals()?,
        payments: first.json(Col::Payments)?.unwrap_or_default(),
        financial_status: first.choice(Col::FinancialStatus)?.unwrap_or_default(),
        fulfillment_status: first.choice(Col::FulfillmentStatus)?.unwrap_or_default(),
        cancellation,
        note: first.optional(Col::Note),
        sales_channel: first.optional(Col::SalesChannel),
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn order_status_from_row(row: &Cells<'_>) -> Result<OrderStatusChange, FieldError> {
    Ok(OrderStatusChange {
        order_number: row.string(Col::OrderNumber),
        state: row.choice(Col::State)?.unwrap_or_default(),
        financial_status: row.choice(Col::FinancialStatus)?,
        fulfillment_status: row.choice(Col::FulfillmentStatus)?,
        changed_at: row.datetime(Col::ChangedAt)?,
        note: row.optional(Col::Note),
        extra: row.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn shipment_from_rows(first: &Cells<'_>, rows: &[Cells<'_>]) -> Result<Shipment, FieldError> {
    let mut lines = Vec::new();
    for row in rows {
        if row.any(&[Col::LineSku, Col::LineQuantity]) {
            lines.push(ShipmentLine {
                sku: row.string(Col::LineSku),
                quantity: row.decimal_or(Col::LineQuantity, Decimal::ZERO)?,
            });
        }
    }
    let tracking = first.json_or_flat(Col::Tracking, &[Col::Carrier, Col::TrackingNumber, Col::TrackingUrl], || {
        Ok(Tracking {
            carrier: first.string(Col::Carrier),
            number: first.string(Col::TrackingNumber),
            url: first.optional(Col::TrackingUrl),
        })
    })?;
    Ok(Shipment {
        number: first.string(Col::Number),
        order_number: first.string(Col::OrderNumber),
        shipped_at: first.datetime(Col::ShippedAt)?,
        location: first.optional(Col::Location),
        lines,
        tracking,
        notify_customer: first.boolean(Col::NotifyCustomer)?,
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn document_from_rows(first: &Cells<'_>, rows: &[Cells<'_>], load_pdf: PdfLoader<'_>) -> Result<Document, FieldError> {
    let mut lines = Vec::new();
    for row in rows {
        if row.any(&[Col::LineSku, Col::LineTitle, Col::LineQuantity, Col::LineUnitPrice, Col::LineTotal]) {
            lines.push(DocumentLine {
                sku: row.optional(Col::LineSku),
                title: row.string(Col::LineTitle),
                quantity: row.decimal_or(Col::LineQuantity, Decimal::ZERO)?,
                unit_price: row.decimal_or(Col::LineUnitPrice, Decimal::ZERO)?,
                total: row.decimal_or(Col::LineTotal, Decimal::ZERO)?,
            });
        }
    }
    let pdf = match (first.text(Col::PdfUrl), first.text(Col::PdfFile)) {
        (Some(_), Some(_)) => {
            return Err(first.fail(Col::PdfFile, "is set together with pdf_url: use one or the other"));
        }
        (Some(url), None) => Some(Pdf::Url { url: url.to_string() }),
        (None, Some(file_name)) => {
            let bytes = load_pdf(file_name).map_err(|message| first.fail(Col::PdfFile, message))?;
            Some(Pdf::Base64 { data: base64_encode(&bytes), file_name: Some(file_name.to_string()) })
        }
        (None, None) => None,
    };
    Ok(Document {
        kind: first.choice(Col::Kind)?.unwrap_or_default(),
        number: first.string(Col::Number),
        order_number: first.optional(Col::OrderNumber),
        issued_at: first.datetime(Col::IssuedAt)?,
        currency: first.required_currency(Col::Currency)?,
        lines,
        totals: first.totals()?,
        pdf,
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

fn refund_from_rows(first: &Cells<'_>, rows: &[Cells<'_>]) -> Result<Refund, FieldError> {
    let mut lines = Vec::new();
    for row in rows {
        if row.any(&[Col::LineSku, Col::LineQuantity, Col::LineAmount, Col::LineRestock]) {
            lines.push(RefundLine {
                sku: row.string(Col::LineSku),
                quantity: row.decimal_or(Col::LineQuantity, Decimal::ZERO)?,
                amount: row.decimal_or(Col::LineAmount, Decimal::ZERO)?,
                restock: row.boolean(Col::LineRestock)?,
            });
        }
    }
    Ok(Refund {
        number: first.string(Col::Number),
        order_number: first.string(Col::OrderNumber),
        refunded_at: first.datetime(Col::RefundedAt)?,
        currency: first.required_currency(Col::Currency)?,
        amount: first.decimal_or(Col::Amount, Decimal::ZERO)?,
        shipping_amount: first.decimal_or(Col::ShippingAmount, Decimal::ZERO)?,
        reason: first.optional(Col::Reason),
        lines,
        extra: first.extra(Col::Extra, Dyn::Extra, true)?,
    })
}

// ---------------------------------------------------------------------------------------------
// Writing.

/// A record's field that the CSV scheme cannot carry, in model terms (`tags[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WriteProblem {
    pub field: String,
    pub message: String,
}

impl fmt::Display for WriteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A file to store next to the CSV file (a document's PDF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attachment {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// A record as rows of cells.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlatRecord {
    pub rows: Vec<Vec<(Key, String)>>,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone)]
struct RowBuilder {
    format: CellFormat,
    cells: Vec<(Key, String)>,
}

impl RowBuilder {
    fn new(format: CellFormat) -> Self {
        Self { format, cells: Vec::with_capacity(32) }
    }

    fn text(&mut self, col: Col, value: &str) {
        if !value.is_empty() {
            self.cells.push((Key::Fixed(col), value.to_string()));
        }
    }

    fn optional(&mut self, col: Col, value: &Option<String>) {
        if let Some(value) = value {
            self.text(col, value);
        }
    }

    fn decimal(&mut self, col: Col, value: Decimal) {
        self.cells.push((Key::Fixed(col), self.format.write_decimal(value)));
    }

    fn optional_decimal(&mut self, col: Col, value: Option<Decimal>) {
        if let Some(value) = value {
            self.decimal(col, value);
        }
    }

    fn boolean(&mut self, col: Col, value: bool) {
        self.cells.push((Key::Fixed(col), if value { "true" } else { "false" }.to_string()));
    }

    fn datetime(&mut self, col: Col, value: &Option<DateTime<Utc>>) {
        if let Some(at) = value {
            self.cells.push((Key::Fixed(col), at.to_rfc3339_opts(SecondsFormat::AutoSi, true)));
        }
    }

    fn choice<T: Serialize>(&mut self, col: Col, value: &T) {
        if let Ok(Value::String(text)) = serde_json::to_value(value) {
            self.cells.push((Key::Fixed(col), text));
        }
    }

    fn json<T: Serialize>(&mut self, col: Col, value: &T) {
        // Model values always serialize: see `erpsync_model::content_hash`.
        if let Ok(text) = serde_json::to_string(value) {
            self.cells.push((Key::Fixed(col), text));
        }
    }

    fn list(&mut self, col: Col, field: &str, values: &[String]) -> Result<(), WriteProblem> {
        if let Some(index) = values.iter().position(|value| value.contains('|')) {
            return Err(WriteProblem {
                field: format!("{field}[{index}]"),
                message: format!("{:?} contains \"|\", which separates the values of one cell", values[index]),
            });
        }
        self.text(col, &values.join("|"));
        Ok(())
    }

    /// String values go to `<family>.<key>` columns; anything a string cell cannot carry
    /// exactly (numbers, objects, empty or space-padded strings) goes to the JSON column.
    fn extra(&mut self, json: Col, family: Dyn, extra: &Extra) {
        let mut rest = Map::new();
        for (key, value) in &extra.0 {
            match value {
                Value::String(text)
                    if !text.trim().is_empty()
                        && text.trim() == text
                        && !key.trim().is_empty()
                        && key.trim() == key =>
                {
                    self.cells.push((Key::Named(family, key.clone()), text.clone()));
                }
                _ => {
                    rest.insert(key.clone(), value.clone());
                }
            }
        }
        if !rest.is_empty() {
            self.json(json, &Extra(rest));
        }
    }

    fn address(&mut self, cols: &AddressCols, address: &Option<Address>) {
        let Some(address) = address else { return };
        self.choice(cols.kind, &address.kind);
        self.optional(cols.first_name, &address.first_name);
        self.optional(cols.last_name, &address.last_name);
        self.optional(cols.company, &address.company);
        self.text(cols.line1, &address.line1);
        self.optional(cols.line2, &address.line2);
        self.text(cols.city, &address.city);
        self.optional(cols.region, &address.region);
        self.optional(cols.postal_code, &address.postal_code);
        self.text(cols.country, &address.country);
        self.optional(cols.phone, &address.phone);
        self.boolean(cols.is_default, address.is_default);
    }

    fn totals(&mut self, totals: &OrderTotals) {
        self.decimal(Col::Subtotal, totals.subtotal);
        self.decimal(Col::DiscountTotal, totals.discount_total);
        self.decimal(Col::ShippingTotal, totals.shipping_total);
        self.decimal(Col::TaxTotal, totals.tax_total);
        self.decimal(Col::Total, totals.total);
    }

    /// This row's cells plus a line's cells: the record's columns repeat on every row.
    fn with(&self, line: RowBuilder) -> Vec<(Key, String)> {
        let mut cells = self.cells.clone();
        cells.extend(line.cells);
        cells
    }
}

/// Flattens a record into rows. Fails when the scheme cannot carry a field exactly and no
/// JSON column exists for it.
pub(crate) fn record_to_rows(record: &Record, format: CellFormat) -> Result<FlatRecord, WriteProblem> {
    let head = RowBuilder::new(format);
    match record {
        Record::Product(product) => product_to_rows(product, head),
        Record::PriceList(list) => Ok(price_list_to_rows(list, head)),
        Record::StockLevel(stock) => Ok(stock_level_to_rows(stock, head)),
        Record::Customer(customer) => Ok(customer_to_rows(customer, head)),
        Record::Order(order) => Ok(order_to_rows(order, head)),
        Record::OrderStatus(change) => Ok(order_status_to_rows(change, head)),
        Record::Shipment(shipment) => Ok(shipment_to_rows(shipment, head)),
        Record::Document(document) => document_to_rows(document, head),
        Record::Refund(refund) => Ok(refund_to_rows(refund, head)),
    }
}

fn rows_of(head: RowBuilder, lines: Vec<RowBuilder>) -> FlatRecord {
    let rows =
        if lines.is_empty() { vec![head.cells] } else { lines.into_iter().map(|line| head.with(line)).collect() };
    FlatRecord { rows, attachments: Vec::new() }
}

fn product_to_rows(product: &Product, mut head: RowBuilder) -> Result<FlatRecord, WriteProblem> {
    // A product without a code is known by its first SKU; writing that as the code keeps its
    // variants together when the file is read again.
    let code = match product.code.trim() {
        "" => product.variants.first().map(|variant| variant.sku.clone()).unwrap_or_default(),
        _ => product.code.clone(),
    };
    head.text(Col::Code, &code);
    head.text(Col::Title, &product.title);
    head.optional(Col::Description, &product.description);
    head.choice(Col::Status, &product.status);
    head.optional(Col::Vendor, &product.vendor);
    head.optional(Col::ProductType, &product.product_type);
    head.list(Col::Tags, "tags", &product.tags)?;
    head.list(Col::Categories, "categories", &product.categories)?;
    head.optional(Col::TaxClass, &product.tax_class);
    let flat_images = product.images.iter().enumerate().all(|(position, image)| {
        image.alt.is_none()
            && image.variant_skus.is_empty()
            && image.position as usize == position
            && !image.url.is_empty()
            && image.url.trim() == image.url
            && !image.url.contains('|')
            && !image.url.starts_with('[')
    });
    if flat_images {
        let urls: Vec<&str> = product.images.iter().map(|image| image.url.as_str()).collect();
        head.text(Col::Images, &urls.join("|"));
    } else {
        head.json(Col::Images, &product.images);
    }
    if derive_options(&product.variants) != product.options {
        head.json(Col::Options, &product.options);
    }
    let mut names = HashSet::new();
    let flat_attributes = product.attributes.iter().all(|attribute| {
        !attribute.name.trim().is_empty()
            && attribute.name.trim() == attribute.name
            && !attribute.value.trim().is_empty()
            && attribute.value.trim() == attribute.value
            && names.insert(attribute.name.as_str())
    });
    if flat_attributes {
        for attribute in &product.attributes {
            head.cells.push((Key::Named(Dyn::Attribute, attribute.name.clone()), attribute.value.clone()));
        }
    } else {
        head.json(Col::Attributes, &product.attributes);
    }
    head.datetime(Col::UpdatedAt, &product.updated_at);
    head.extra(Col::Extra, Dyn::Extra, &product.extra);

    let mut lines = Vec::with_capacity(product.variants.len());
    for (index, variant) in product.variants.iter().enumerate() {
        let mut line = RowBuilder::new(head.format);
        line.text(Col::Sku, &variant.sku);
        line.optional(Col::VariantTitle, &variant.title);
        line.optional(Col::Barcode, &variant.barcode);
        let prices = [
            ("price", Col::Price, &variant.price),
            ("compare_at_price", Col::CompareAtPrice, &variant.compare_at_price),
            ("cost", Col::Cost, &variant.cost),
        ];
        let mut currency: Option<Currency> = None;
        for (field, col, money) in prices {
            let Some(money) = money else { continue };
            match currency {
                Some(currency) if currency != money.currency => {
                    return Err(WriteProblem {
                        field: format!("variants[{index}].{field}"),
                        message: format!(
                            "is in {} but another price of the variant is in {currency}: a csv row has one currency column",
                            money.currency
                        ),
                    });
                }
                _ => currency = Some(money.currency),
            }
            line.decimal(col, money.amount);
        }
        if let Some(currency) = currency {
            line.text(Col::Currency, currency.as_str());
        }
        line.boolean(Col::PriceIncludesTax, variant.price_includes_tax);
        if let Some(weight) = &variant.weight {
            line.decimal(Col::Weight, weight.value);
            line.text(Col::WeightUnit, &weight.unit);
        }
        line.boolean(Col::TrackInventory, variant.track_inventory);
        for (position, option) in variant.options.iter().enumerate() {
            let number = position as u32 + 1;
            if !option.option.is_empty() {
                line.cells.push((Key::OptionName(number), option.option.clone()));
            }
            if !option.value.is_empty() {
                line.cells.push((Key::OptionValue(number), option.value.clone()));
            }
        }
        line.extra(Col::VariantExtra, Dyn::VariantExtra, &variant.extra);
        lines.push(line);
    }
    Ok(rows_of(head, lines))
}

fn price_list_to_rows(list: &PriceList, mut head: RowBuilder) -> FlatRecord {
    head.text(Col::Code, &list.code);
    head.text(Col::Name, &list.name);
    head.text(Col::Currency, list.currency.as_str());
    head.optional(Col::CustomerGroup, &list.customer_group);
    head.boolean(Col::PricesIncludeTax, list.prices_include_tax);
    head.datetime(Col::ValidFrom, &list.valid_from);
    head.datetime(Col::ValidTo, &list.valid_to);
    head.datetime(Col::UpdatedAt, &list.updated_at);
    head.extra(Col::Extra, Dyn::Extra, &list.extra);
    let lines = list
        .entries
        .iter()
        .map(|entry| {
            let mut line = RowBuilder::new(head.format);
            line.text(Col::Sku, &entry.sku);
            line.decimal(Col::MinQuantity, entry.min_quantity);
            line.decimal(Col::Price, entry.price);
            line
        })
        .collect();
    rows_of(head, lines)
}

fn stock_level_to_rows(stock: &StockLevel, mut head: RowBuilder) -> FlatRecord {
    head.text(Col::Sku, &stock.sku);
    head.text(Col::Location, &stock.location);
    head.decimal(Col::Available, stock.available);
    head.optional_decimal(Col::OnHand, stock.on_hand);
    head.datetime(Col::UpdatedAt, &stock.updated_at);
    head.extra(Col::Extra, Dyn::Extra, &stock.extra);
    rows_of(head, Vec::new())
}

fn customer_to_rows(customer: &Customer, mut head: RowBuilder) -> FlatRecord {
    head.optional(Col::Number, &customer.number);
    head.optional(Col::Email, &customer.email);
    head.optional(Col::FirstName, &customer.first_name);
    head.optional(Col::LastName, &customer.last_name);
    head.optional(Col::Company, &customer.company);
    head.optional(Col::Phone, &customer.phone);
    head.optional(Col::Group, &customer.group);
    head.optional(Col::TaxNumber, &customer.tax_number);
    head.boolean(Col::AcceptsMarketing, customer.accepts_marketing);
    head.datetime(Col::UpdatedAt, &customer.updated_at);
    head.extra(Col::Extra, Dyn::Extra, &customer.extra);
    let lines = customer
        .addresses
        .iter()
        .map(|address| {
            let mut line = RowBuilder::new(head.format);
            line.address(&ADDRESS, &Some(address.clone()));
            line
        })
        .collect();
    rows_of(head, lines)
}

fn order_to_rows(order: &Order, mut head: RowBuilder) -> FlatRecord {
    head.text(Col::Number, &order.number);
    head.datetime(Col::PlacedAt, &order.placed_at);
    head.datetime(Col::UpdatedAt, &order.updated_at);
    head.text(Col::Currency, order.currency.as_str());
    head.boolean(Col::PricesIncludeTax, order.prices_include_tax);
    head.choice(Col::Rounding, &order.rounding);
    head.choice(Col::FinancialStatus, &order.financial_status);
    head.choice(Col::FulfillmentStatus, &order.fulfillment_status);
    let customer = &order.customer;
    head.optional(Col::CustomerEmail, &customer.email);
    head.optional(Col::CustomerNumber, &customer.number);
    head.optional(Col::CustomerFirstName, &customer.first_name);
    head.optional(Col::CustomerLastName, &customer.last_name);
    head.optional(Col::CustomerCompany, &customer.company);
    head.optional(Col::CustomerPhone, &customer.phone);
    head.optional(Col::CustomerGroup, &customer.group);
    head.address(&BILLING, &order.billing_address);
    head.address(&SHIPPING, &order.shipping_address);
    head.totals(&order.totals);
    match order.shipping_lines.as_slice() {
        [] => {}
        [line] if line.tax_lines.is_empty() => {
            head.text(Col::ShippingMethod, &line.method);
            head.text(Col::ShippingTitle, &line.title);
            head.decimal(Col::ShippingPrice, line.price);
        }
        lines => head.json(Col::ShippingLines, &lines),
    }
    if !order.discounts.is_empty() {
        head.json(Col::Discounts, &order.discounts);
    }
    if !order.tax_lines.is_empty() {
        head.json(Col::TaxLines, &order.tax_lines);
    }
    if !order.payments.is_empty() {
        head.json(Col::Payments, &order.payments);
    }
    head.boolean(Col::Cancelled, order.cancellation.is_some());
    if let Some(cancellation) = &order.cancellation {
        head.datetime(Col::CancelledAt, &cancellation.cancelled_at);
        head.optional(Col::CancelReason, &cancellation.reason);
    }
    head.optional(Col::Note, &order.note);
    head.optional(Col::SalesChannel, &order.sales_channel);
    head.extra(Col::Extra, Dyn::Extra, &order.extra);
    let lines = order
        .lines
        .iter()
        .map(|order_line| {
            let mut line = RowBuilder::new(head.format);
            line.optional(Col::LineId, &order_line.line_id);
            line.text(Col::LineSku, &order_line.sku);
            line.text(Col::LineTitle, &order_line.title);
            line.decimal(Col::LineQuantity, order_line.quantity);
            line.decimal(Col::LineUnitPrice, order_line.unit_price);
            line.decimal(Col::LineDiscount, order_line.discount);
            line.decimal(Col::LineTotal, order_line.total);
            match order_line.tax_lines.as_slice() {
                [] => {}
                [tax] => {
                    line.text(Col::LineTaxTitle, &tax.title);
                    line.decimal(Col::LineTaxRate, tax.rate);
                    line.decimal(Col::LineTaxAmount, tax.amount);
                }
                taxes => line.json(Col::LineTaxLines, &taxes),
            }
            line.extra(Col::LineExtra, Dyn::LineExtra, &order_line.extra);
            line
        })
        .collect();
    rows_of(head, lines)
}

fn order_status_to_rows(change: &OrderStatusChange, mut head: RowBuilder) -> FlatRecord {
    head.text(Col::OrderNumber, &change.order_number);
    head.choice(Col::State, &change.state);
    if let Some(status) = &change.financial_status {
        head.choice(Col::FinancialStatus, status);
    }
    if let Some(status) = &change.fulfillment_status {
        head.choice(Col::FulfillmentStatus, status);
    }
    head.datetime(Col::ChangedAt, &change.changed_at);
    head.optional(Col::Note, &change.note);
    head.extra(Col::Extra, Dyn::Extra, &change.extra);
    rows_of(head, Vec::new())
}

fn shipment_to_rows(shipment: &Shipment, mut head: RowBuilder) -> FlatRecord {
    head.text(Col::Number, &shipment.number);
    head.text(Col::OrderNumber, &shipment.order_number);
    head.datetime(Col::ShippedAt, &shipment.shipped_at);
    head.optional(Col::Location, &shipment.location);
    head.boolean(Col::NotifyCustomer, shipment.notify_customer);
    match shipment.tracking.as_slice() {
        [] => {}
        [tracking] if !tracking.carrier.is_empty() || !tracking.number.is_empty() || tracking.url.is_some() => {
            head.text(Col::Carrier, &tracking.carrier);
            head.text(Col::TrackingNumber, &tracking.number);
            head.optional(Col::TrackingUrl, &tracking.url);
        }
        all => head.json(Col::Tracking, &all),
    }
    head.extra(Col::Extra, Dyn::Extra, &shipment.extra);
    let lines = shipment
        .lines
        .iter()
        .map(|shipment_line| {
            let mut line = RowBuilder::new(head.format);
            line.text(Col::LineSku, &shipment_line.sku);
            line.decimal(Col::LineQuantity, shipment_line.quantity);
            line
        })
        .collect();
    rows_of(head, lines)
}

fn document_to_rows(document: &Document, mut head: RowBuilder) -> Result<FlatRecord, WriteProblem> {
    head.choice(Col::Kind, &document.kind);
    head.text(Col::Number, &document.number);
    head.optional(Col::OrderNumber, &document.order_number);
    head.datetime(Col::IssuedAt, &document.issued_at);
    head.text(Col::Currency, document.currency.as_str());
    head.totals(&document.totals);
    let mut attachments = Vec::new();
    match &document.pdf {
        None => {}
        Some(Pdf::Url { url }) => head.text(Col::PdfUrl, url),
        Some(Pdf::Base64 { data, file_name }) => {
            let bytes = base64_decode(data).map_err(|message| WriteProblem { field: "pdf.data".into(), message })?;
            let file_name = file_name
                .as_deref()
                .and_then(safe_file_name)
                .or_else(|| safe_file_name(&format!("{}-{}.pdf", document.kind.as_str(), document.number)))
                .ok_or_else(|| WriteProblem {
                    field: "pdf.file_name".into(),
                    message: "no usable file name for the pdf".into(),
                })?;
            head.text(Col::PdfFile, &file_name);
            attachments.push(Attachment { file_name, bytes });
        }
    }
    head.extra(Col::Extra, Dyn::Extra, &document.extra);
    let lines = document
        .lines
        .iter()
        .map(|document_line| {
            let mut line = RowBuilder::new(head.format);
            line.optional(Col::LineSku, &document_line.sku);
            line.text(Col::LineTitle, &document_line.title);
            line.decimal(Col::LineQuantity, document_line.quantity);
            line.decimal(Col::LineUnitPrice, document_line.unit_price);
            line.decimal(Col::LineTotal, document_line.total);
            line
        })
        .collect();
    let mut flat = rows_of(head, lines);
    flat.attachments = attachments;
    Ok(flat)
}

fn refund_to_rows(refund: &Refund, mut head: RowBuilder) -> FlatRecord {
    head.text(Col::Number, &refund.number);
    head.text(Col::OrderNumber, &refund.order_number);
    head.datetime(Col::RefundedAt, &refund.refunded_at);
    head.text(Col::Currency, refund.currency.as_str());
    head.decimal(Col::Amount, refund.amount);
    head.decimal(Col::ShippingAmount, refund.shipping_amount);
    head.optional(Col::Reason, &refund.reason);
    head.extra(Col::Extra, Dyn::Extra, &refund.extra);
    let lines = refund
        .lines
        .iter()
        .map(|refund_line| {
            let mut line = RowBuilder::new(head.format);
            line.text(Col::LineSku, &refund_line.sku);
            line.decimal(Col::LineQuantity, refund_line.quantity);
            line.decimal(Col::LineAmount, refund_line.amount);
            line.boolean(Col::LineRestock, refund_line.restock);
            line
        })
        .collect();
    rows_of(head, lines)
}

/// The last path component of `name`, if it is a plain, visible file name: a PDF is only ever
/// written inside the folder.
pub(crate) fn safe_file_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?.trim();
    let cleaned: String = base
        .chars()
        .map(|c| if c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '+' | '#') { c } else { '_' })
        .collect();
    let cleaned = cleaned.trim_start_matches('.').trim().to_string();
    (!cleaned.is_empty() && cleaned.len() <= 200).then_some(cleaned)
}

// ---------------------------------------------------------------------------------------------
// JSON Lines.

/// One line of a JSON Lines file: the record's canonical JSON; `"entity"` may be left out and
/// must match when present.
pub(crate) fn record_from_json(entity: EntityKind, mut value: Value) -> Result<Record, String> {
    let Value::Object(object) = &mut value else {
        return Err(format!("expected a JSON object, found {}", json_type(&value)));
    };
    match object.get("entity") {
        None => {
            object.insert("entity".into(), Value::String(entity.as_str().into()));
        }
        Some(Value::String(name)) if name == entity.as_str() => {}
        Some(other) => return Err(format!("\"entity\" is {other}, but this file holds {entity} records")),
    }
    serde_json::from_value(value).map_err(|error| format!("not a valid {entity}: {error}"))
}

pub(crate) fn record_to_json(record: &Record) -> String {
    // A record always serializes: see `erpsync_model::content_hash`.
    serde_json::to_string(record).unwrap_or_default()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------------------------
// Base64 (standard alphabet, padded), for PDFs: small enough not to be a dependency.

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(BASE64[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64; whitespace is skipped, padding optional.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer = 0u32;
    let mut bits = 0;
    let mut padding = false;
    for (position, byte) in text.bytes().enumerate() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("not base64: unexpected character at position {position}")),
        };
        if padding {
            return Err(format!("not base64: data after padding at position {position}"));
        }
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("not base64: truncated".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_matches_known_values() {
        for (bytes, text) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (b"%PDF-1.4\n\xff\x00", "JVBERi0xLjQK/wA="),
        ] {
            assert_eq!(base64_encode(bytes), text);
            assert_eq!(base64_decode(text).unwrap(), bytes);
        }
        assert!(base64_decode("Zm9v!").is_err());
        assert!(base64_decode("Z").is_err());
    }

    #[test]
    fn canonical_columns_know_fixed_named_and_option_columns() {
        let check = |entity, name: &str, expected: Option<&str>| {
            assert_eq!(canonical_column(entity, name).map(|key| key.to_string()).as_deref(), expected, "{name}");
        };
        check(EntityKind::Product, "SKU", Some("sku"));
        check(EntityKind::Product, "extra.Lagerort", Some("extra.Lagerort"));
        check(EntityKind::Product, "extra.", None);
        check(EntityKind::Product, "option12_value", Some("option12_value"));
        check(EntityKind::Product, "option0_value", None);
        check(EntityKind::Product, "attribute.Material", Some("attribute.Material"));
        check(EntityKind::StockLevel, "attribute.Material", None);
        check(EntityKind::Order, "billing_city", Some("billing_city"));
        check(EntityKind::Order, "line_extra.gift", Some("line_extra.gift"));
        check(EntityKind::Customer, "address_country", Some("address_country"));
        check(EntityKind::Customer, "title", None);
    }

    #[test]
    fn slot_lists_hold_each_column_once() {
        for entity in EntityKind::ALL {
            let slots = slots(entity);
            for (index, slot) in slots.iter().enumerate() {
                assert!(!slots[index + 1..].contains(slot), "{entity}: {slot:?} twice");
            }
        }
    }

    #[test]
    fn datetimes_accept_rfc3339_and_zoneless_utc() {
        let check = |text: &str, expected: &str| {
            assert_eq!(parse_datetime(text).unwrap().to_rfc3339(), expected, "{text}");
        };
        check("2024-03-01T10:00:00+01:00", "2024-03-01T09:00:00+00:00");
        check("2024-03-01 10:00:00", "2024-03-01T10:00:00+00:00");
        check("2024-03-01", "2024-03-01T00:00:00+00:00");
        assert!(parse_datetime("01.03.2024").unwrap_err().contains("\"01.03.2024\""));
    }

    #[test]
    fn decimals_follow_the_configured_separator() {
        let comma = CellFormat { decimal_comma: true };
        assert_eq!(comma.parse_decimal("12,50").unwrap(), Decimal::new(125, 1));
        assert_eq!(comma.write_decimal(Decimal::new(1250, 2)), "12,5");
        let dot = CellFormat::default();
        assert_eq!(dot.parse_decimal("12,5x").unwrap_err(), "\"12,5x\" is not a decimal number");
    }

    #[test]
    fn file_names_for_pdfs_stay_inside_the_folder() {
        assert_eq!(safe_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_file_name("Rechnung 2024/0001.pdf").as_deref(), Some("0001.pdf"));
        assert_eq!(safe_file_name(".hidden.pdf").as_deref(), Some("hidden.pdf"));
        assert_eq!(safe_file_name("a:b*c.pdf").as_deref(), Some("a_b_c.pdf"));
        assert_eq!(safe_file_name("..").as_deref(), None);
    }
}
