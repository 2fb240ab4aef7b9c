//! The models the simulator knows, with their fields typed the way Odoo types them. The store
//! is generic over this registry; business rules live in `business.rs`.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    Char,
    Text,
    Integer,
    Float,
    /// Odoo keeps monetary amounts as floats on the wire.
    Monetary,
    Boolean,
    Selection(&'static [&'static str]),
    Date,
    Datetime,
    Many2one(&'static str),
    One2many {
        comodel: &'static str,
        inverse: &'static str,
    },
    Many2many(&'static str),
}

impl FieldKind {
    pub fn type_name(self) -> &'static str {
        match self {
            FieldKind::Char => "char",
            FieldKind::Text => "text",
            FieldKind::Integer => "integer",
            FieldKind::Float => "float",
            FieldKind::Monetary => "monetary",
            FieldKind::Boolean => "boolean",
            FieldKind::Selection(_) => "selection",
            FieldKind::Date => "date",
            FieldKind::Datetime => "datetime",
            FieldKind::Many2one(_) => "many2one",
            FieldKind::One2many { .. } => "one2many",
            FieldKind::Many2many(_) => "many2many",
        }
    }

    pub fn comodel(self) -> Option<&'static str> {
        match self {
            FieldKind::Many2one(comodel) | FieldKind::Many2many(comodel) => Some(comodel),
            FieldKind::One2many { comodel, .. } => Some(comodel),
            _ => None,
        }
    }

    pub fn is_x2many(self) -> bool {
        matches!(self, FieldKind::One2many { .. } | FieldKind::Many2many(_))
    }

    /// The value a field holds when nothing was set: Odoo reads numbers as 0 and everything
    /// else as `false`.
    pub fn empty_value(self) -> Value {
        match self {
            FieldKind::Integer => json!(0),
            FieldKind::Float | FieldKind::Monetary => json!(0.0),
            FieldKind::One2many { .. } | FieldKind::Many2many(_) => json!([]),
            _ => Value::Bool(false),
        }
    }
}

/// How a field gets its value when a `create` does not give one.
#[derive(Debug, Clone)]
pub enum DefaultValue {
    None,
    Value(Value),
    /// The current (simulated) time, as Odoo's `fields.Datetime.now`.
    Now,
    /// The current date.
    Today,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub required: bool,
    pub default: DefaultValue,
    /// Computed by the simulator: reads compute it, writes ignore it.
    pub computed: bool,
    /// `related=` through a many2one of the same model: reads and writes go to the target.
    pub related: Option<(&'static str, &'static str)>,
    /// For a many2one: deleting the target deletes this record too.
    pub cascade: bool,
}

fn field(name: &'static str, label: &'static str, kind: FieldKind) -> FieldDef {
    FieldDef {
        name,
        label,
        kind,
        required: false,
        default: DefaultValue::None,
        computed: false,
        related: None,
        cascade: false,
    }
}

impl FieldDef {
    fn required(mut self) -> Self {
        self.required = true;
        self
    }
    fn default(mut self, value: Value) -> Self {
        self.default = DefaultValue::Value(value);
        self
    }
    fn default_now(mut self) -> Self {
        self.default = DefaultValue::Now;
        self
    }
    fn default_today(mut self) -> Self {
        self.default = DefaultValue::Today;
        self
    }
    fn computed(mut self) -> Self {
        self.computed = true;
        self
    }
    fn related(mut self, through: &'static str, target: &'static str) -> Self {
        self.related = Some((through, target));
        self
    }
    fn cascade(mut self) -> Self {
        self.cascade = true;
        self
    }
    /// Whether the store keeps a value for this field in the record itself.
    pub fn is_stored(&self) -> bool {
        !self.computed && self.related.is_none() && !matches!(self.kind, FieldKind::One2many { .. })
    }
}

fn char(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Char)
}
fn text(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Text)
}
fn integer(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Integer)
}
fn float(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Float)
}
fn monetary(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Monetary)
}
fn boolean(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Boolean)
}
fn selection(name: &'static str, label: &'static str, values: &'static [&'static str]) -> FieldDef {
    field(name, label, FieldKind::Selection(values))
}
fn date(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Date)
}
fn datetime(name: &'static str, label: &'static str) -> FieldDef {
    field(name, label, FieldKind::Datetime)
}
fn many2one(name: &'static str, label: &'static str, comodel: &'static str) -> FieldDef {
    field(name, label, FieldKind::Many2one(comodel))
}
fn one2many(name: &'static str, label: &'static str, comodel: &'static str, inverse: &'static str) -> FieldDef {
    field(name, label, FieldKind::One2many { comodel, inverse })
}
fn many2many(name: &'static str, label: &'static str, comodel: &'static str) -> FieldDef {
    field(name, label, FieldKind::Many2many(comodel))
}
fn active() -> FieldDef {
    boolean("active", "Active").default(json!(true))
}

#[derive(Debug)]
pub struct ModelDef {
    pub name: &'static str,
    pub description: &'static str,
    pub fields: Vec<FieldDef>,
    index: HashMap<&'static str, usize>,
    /// Odoo's `_order`, used when a search gives none.
    pub default_order: &'static str,
    /// The field holding the parent, for `child_of` / `parent_of`.
    pub parent_field: Option<&'static str>,
}

impl ModelDef {
    fn new(name: &'static str, description: &'static str, default_order: &'static str, fields: Vec<FieldDef>) -> Self {
        // Every model has the magic fields `id`, `display_name`, `create_date`, `write_date`.
        let mut all = vec![
            integer("id", "ID").computed(),
            char("display_name", "Display Name").computed(),
            datetime("create_date", "Created on"),
            datetime("write_date", "Last Updated on"),
        ];
        all.extend(fields);
        let index = all.iter().enumerate().map(|(position, field)| (field.name, position)).collect();
        ModelDef { name, description, fields: all, index, default_order, parent_field: None }
    }
    fn parent(mut self, parent_field: &'static str) -> Self {
        self.parent_field = Some(parent_field);
        self
    }
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.index.get(name).map(|position| &self.fields[*position])
    }
    pub fn has_active(&self) -> bool {
        self.index.contains_key("active")
    }
}

#[derive(Debug)]
pub struct Registry {
    pub models: BTreeMap<&'static str, ModelDef>,
}

impl Registry {
    pub fn model(&self, name: &str) -> Option<&ModelDef> {
        self.models.get(name)
    }
}

pub const PARTNER_TYPES: &[&str] = &["contact", "invoice", "delivery", "other"];
pub const PRODUCT_TYPES: &[&str] = &["consu", "service", "product", "combo"];
pub const SALE_STATES: &[&str] = &["draft", "sent", "sale", "cancel"];
pub const PICKING_STATES: &[&str] = &["draft", "waiting", "confirmed", "assigned", "done", "cancel"];
pub const MOVE_STATES: &[&str] = &["draft", "posted", "cancel"];
pub const MOVE_TYPES: &[&str] = &["entry", "out_invoice", "out_refund", "in_invoice", "in_refund"];
pub const PAYMENT_STATES: &[&str] = &["not_paid", "in_payment", "paid", "partial", "reversed", "invoicing_legacy"];
pub const LOCATION_USAGES: &[&str] =
    &["supplier", "view", "internal", "customer", "inventory", "production", "transit"];
pub const APPLIED_ON: &[&str] = &["3_global", "2_product_category", "1_product", "0_product_variant"];
pub const COMPUTE_PRICE: &[&str] = &["fixed", "percentage", "formula"];

/// The registry, built once.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(build_registry)
}

fn build_registry() -> Registry {
    let models = vec![
        ModelDef::new(
            "res.users",
            "User",
            "name, id",
            vec![char("name", "Name").required(), char("login", "Login"), active()],
        ),
        ModelDef::new(
            "res.country",
            "Country",
            "name",
            vec![char("name", "Country Name").required(), char("code", "Country Code")],
        ),
        ModelDef::new(
            "res.partner.category",
            "Partner Tags",
            "name",
            vec![
                char("name", "Tag Name").required(),
                many2one("parent_id", "Parent Category", "res.partner.category"),
                active(),
            ],
        )
        .parent("parent_id"),
        ModelDef::new(
            "res.partner",
            "Contact",
            "complete_name ASC, id DESC",
            vec![
                char("name", "Name"),
                char("complete_name", "Complete Name").computed(),
                boolean("is_company", "Is a Company"),
                many2one("parent_id", "Related Company", "res.partner"),
                one2many("child_ids", "Contact", "res.partner", "parent_id"),
                selection("type", "Address Type", PARTNER_TYPES).default(json!("contact")),
                char("street", "Street"),
                char("street2", "Street2"),
                char("city", "City"),
                char("zip", "Zip"),
                many2one("country_id", "Country", "res.country"),
                char("email", "Email"),
                char("phone", "Phone"),
                char("mobile", "Mobile"),
                char("ref", "Reference"),
                char("vat", "Tax ID"),
                char("lang", "Language"),
                text("comment", "Notes"),
                integer("customer_rank", "Customer Rank"),
                many2many("category_id", "Tags", "res.partner.category"),
                many2one("property_product_pricelist", "Pricelist", "product.pricelist"),
                active(),
            ],
        )
        .parent("parent_id"),
        ModelDef::new(
            "product.category",
            "Product Category",
            "complete_name",
            vec![
                char("name", "Name").required(),
                char("complete_name", "Complete Name").computed(),
                many2one("parent_id", "Parent Category", "product.category"),
            ],
        )
        .parent("parent_id"),
        ModelDef::new("product.attribute", "Product Attribute", "name", vec![char("name", "Attribute").required()]),
        ModelDef::new(
            "product.attribute.value",
            "Attribute Value",
            "attribute_id, id",
            vec![
                char("name", "Value").required(),
                many2one("attribute_id", "Attribute", "product.attribute").required().cascade(),
            ],
        ),
        ModelDef::new(
            "product.template.attribute.line",
            "Product Template Attribute Line",
            "id",
            vec![
                many2one("product_tmpl_id", "Product Template", "product.template").required().cascade(),
                many2one("attribute_id", "Attribute", "product.attribute").required(),
                many2many("value_ids", "Values", "product.attribute.value"),
            ],
        ),
        ModelDef::new(
            "account.tax",
            "Tax",
            "sequence,id",
            vec![
                char("name", "Tax Name").required(),
                float("amount", "Amount"),
                selection("amount_type", "Tax Computation", &["group", "fixed", "percent", "division"])
                    .default(json!("percent")),
                selection("type_tax_use", "Tax Type", &["sale", "purchase", "none"]).default(json!("sale")),
                boolean("price_include", "Included in Price"),
                integer("sequence", "Sequence").default(json!(1)),
                active(),
            ],
        ),
        ModelDef::new(
            "product.template",
            "Product",
            "priority desc, name",
            vec![
                char("name", "Name").required(),
                integer("priority", "Favorite"),
                char("default_code", "Internal Reference"),
                char("barcode", "Barcode"),
                float("list_price", "Sales Price").default(json!(1.0)),
                float("standard_price", "Cost"),
                selection("type", "Product Type", PRODUCT_TYPES).default(json!("consu")),
                selection("detailed_type", "Product Type", PRODUCT_TYPES).default(json!("consu")),
                boolean("sale_ok", "Can be Sold").default(json!(true)),
                many2one("categ_id", "Product Category", "product.category").required().default(json!(1)),
                text("description_sale", "Sales Description"),
                float("weight", "Weight"),
                many2many("taxes_id", "Customer Taxes", "account.tax"),
                one2many(
                    "attribute_line_ids",
                    "Product Attributes",
                    "product.template.attribute.line",
                    "product_tmpl_id",
                ),
                one2many("product_variant_ids", "Products", "product.product", "product_tmpl_id"),
                integer("product_variant_count", "# Product Variants").computed(),
                float("qty_available", "Quantity On Hand").computed(),
                active(),
            ],
        ),
        ModelDef::new(
            "product.product",
            "Product Variant",
            "priority desc, default_code, name, id",
            vec![
                many2one("product_tmpl_id", "Product Template", "product.template").required().cascade(),
                char("default_code", "Internal Reference"),
                char("barcode", "Barcode"),
                float("price_extra", "Variant Price Extra"),
                float("lst_price", "Sales Price").computed(),
                float("standard_price", "Cost"),
                many2many("product_template_attribute_value_ids", "Attribute Values", "product.attribute.value"),
                float("qty_available", "Quantity On Hand").computed(),
                float("virtual_available", "Forecasted Quantity").computed(),
                float("free_qty", "Free To Use Quantity").computed(),
                char("name", "Name").related("product_tmpl_id", "name"),
                integer("priority", "Favorite").related("product_tmpl_id", "priority"),
                float("list_price", "Sales Price").related("product_tmpl_id", "list_price"),
                selection("type", "Product Type", PRODUCT_TYPES).related("product_tmpl_id", "type"),
                selection("detailed_type", "Product Type", PRODUCT_TYPES).related("product_tmpl_id", "detailed_type"),
                many2one("categ_id", "Product Category", "product.category").related("product_tmpl_id", "categ_id"),
                boolean("sale_ok", "Can be Sold").related("product_tmpl_id", "sale_ok"),
                text("description_sale", "Sales Description").related("product_tmpl_id", "description_sale"),
                many2many("taxes_id", "Customer Taxes", "account.tax").related("product_tmpl_id", "taxes_id"),
                active(),
            ],
        ),
        ModelDef::new(
            "product.pricelist",
            "Pricelist",
            "sequence asc, id asc",
            vec![
                char("name", "Pricelist Name").required(),
                integer("sequence", "Sequence").default(json!(16)),
                char("currency_code", "Currency").default(json!("EUR")),
                one2many("item_ids", "Pricelist Rules", "product.pricelist.item", "pricelist_id"),
                active(),
            ],
        ),
        ModelDef::new(
            "product.pricelist.item",
            "Pricelist Rule",
            "applied_on, min_quantity desc, categ_id desc, id desc",
            vec![
                many2one("pricelist_id", "Pricelist", "product.pricelist").required().cascade(),
                selection("applied_on", "Apply On", APPLIED_ON).required().default(json!("3_global")),
                many2one("product_tmpl_id", "Product", "product.template").cascade(),
                many2one("product_id", "Product Variant", "product.product").cascade(),
                many2one("categ_id", "Product Category", "product.category").cascade(),
                float("min_quantity", "Min. Quantity"),
                selection("compute_price", "Compute Price", COMPUTE_PRICE).required().default(json!("fixed")),
                float("fixed_price", "Fixed Price"),
                float("percent_price", "Percentage Price"),
                datetime("date_start", "Start Date"),
                datetime("date_end", "End Date"),
                active(),
            ],
        ),
        ModelDef::new(
            "stock.location",
            "Inventory Locations",
            "complete_name, id",
            vec![
                char("name", "Location Name").required(),
                char("complete_name", "Full Location Name").computed(),
                many2one("location_id", "Parent Location", "stock.location"),
                selection("usage", "Location Type", LOCATION_USAGES).required().default(json!("internal")),
                many2one("warehouse_id", "Warehouse", "stock.warehouse"),
                active(),
            ],
        )
        .parent("location_id"),
        ModelDef::new(
            "stock.warehouse",
            "Warehouse",
            "sequence,id",
            vec![
                char("name", "Warehouse").required(),
                char("code", "Short Name").required(),
                integer("sequence", "Sequence").default(json!(10)),
                many2one("view_location_id", "View Location", "stock.location"),
                many2one("lot_stock_id", "Location Stock", "stock.location"),
                many2one("partner_id", "Address", "res.partner"),
                active(),
            ],
        ),
        ModelDef::new(
            "stock.quant",
            "Quants",
            "id",
            vec![
                many2one("product_id", "Product", "product.product").required().cascade(),
                many2one("location_id", "Location", "stock.location").required().cascade(),
                many2one("warehouse_id", "Warehouse", "stock.warehouse").related("location_id", "warehouse_id"),
                float("quantity", "Quantity"),
                float("reserved_quantity", "Reserved Quantity"),
                float("available_quantity", "Available Quantity").computed(),
                float("inventory_quantity", "Counted Quantity"),
                boolean("inventory_quantity_set", "Inventory Quantity Set"),
                float("inventory_diff_quantity", "Difference").computed(),
                float("inventory_quantity_auto_apply", "Inventoried Quantity").computed(),
                date("inventory_date", "Scheduled Date"),
            ],
        ),
        ModelDef::new(
            "sale.order",
            "Sales Order",
            "date_order desc, id desc",
            vec![
                char("name", "Order Reference").required().default(json!("New")),
                many2one("partner_id", "Customer", "res.partner").required(),
                many2one("partner_invoice_id", "Invoice Address", "res.partner"),
                many2one("partner_shipping_id", "Delivery Address", "res.partner"),
                many2one("pricelist_id", "Pricelist", "product.pricelist"),
                char("client_order_ref", "Customer Reference"),
                char("origin", "Source Document"),
                datetime("date_order", "Order Date").required().default_now(),
                selection("state", "Status", SALE_STATES).default(json!("draft")),
                boolean("locked", "Locked"),
                one2many("order_line", "Order Lines", "sale.order.line", "order_id"),
                monetary("amount_untaxed", "Untaxed Amount"),
                monetary("amount_tax", "Taxes"),
                monetary("amount_total", "Total"),
                char("currency_code", "Currency").default(json!("EUR")),
                selection("invoice_status", "Invoice Status", &["upselling", "invoiced", "to invoice", "no"])
                    .default(json!("no")),
                one2many("picking_ids", "Transfers", "stock.picking", "sale_id"),
                integer("delivery_count", "Delivery Orders").computed(),
                text("note", "Terms and conditions"),
            ],
        ),
        ModelDef::new(
            "sale.order.line",
            "Sales Order Line",
            "order_id, sequence, id",
            vec![
                many2one("order_id", "Order Reference", "sale.order").required().cascade(),
                integer("sequence", "Sequence").default(json!(10)),
                many2one("product_id", "Product", "product.product"),
                text("name", "Description"),
                float("product_uom_qty", "Quantity").default(json!(1.0)),
                float("price_unit", "Unit Price"),
                float("discount", "Discount (%)"),
                many2many("tax_id", "Taxes", "account.tax"),
                monetary("price_subtotal", "Subtotal"),
                monetary("price_tax", "Total Tax"),
                monetary("price_total", "Total"),
                float("qty_delivered", "Delivery Quantity"),
                float("qty_invoiced", "Invoiced Quantity"),
                selection("state", "Order Status", SALE_STATES).related("order_id", "state"),
            ],
        ),
        ModelDef::new(
            "stock.picking",
            "Transfer",
            "priority desc, scheduled_date asc, id desc",
            vec![
                char("name", "Reference").default(json!("/")),
                char("priority", "Priority").default(json!("0")),
                char("origin", "Source Document"),
                many2one("sale_id", "Sales Order", "sale.order"),
                many2one("partner_id", "Contact", "res.partner"),
                selection("picking_type_code", "Type of Operation", &["incoming", "outgoing", "internal"])
                    .default(json!("outgoing")),
                selection("state", "Status", PICKING_STATES).default(json!("draft")),
                many2one("location_id", "Source Location", "stock.location"),
                many2one("location_dest_id", "Destination Location", "stock.location"),
                datetime("scheduled_date", "Scheduled Date").default_now(),
                datetime("date_done", "Date of Transfer"),
                char("carrier_tracking_ref", "Tracking Reference"),
                char("carrier_name", "Carrier"),
                one2many("move_ids", "Stock Moves", "stock.move", "picking_id"),
            ],
        ),
        ModelDef::new(
            "stock.move",
            "Stock Move",
            "sequence, id",
            vec![
                char("name", "Description"),
                integer("sequence", "Sequence").default(json!(10)),
                many2one("picking_id", "Transfer", "stock.picking").cascade(),
                many2one("product_id", "Product", "product.product").required(),
                float("product_uom_qty", "Demand"),
                float("quantity", "Quantity"),
                many2one("location_id", "Source Location", "stock.location"),
                many2one("location_dest_id", "Destination Location", "stock.location"),
                many2one("sale_line_id", "Sale Line", "sale.order.line"),
                selection(
                    "state",
                    "Status",
                    &["draft", "waiting", "confirmed", "partially_available", "assigned", "done", "cancel"],
                )
                .default(json!("draft")),
            ],
        ),
        ModelDef::new(
            "account.move",
            "Journal Entry",
            "date desc, name desc, id desc",
            vec![
                char("name", "Number").default(json!("/")),
                selection("move_type", "Type", MOVE_TYPES).required().default(json!("entry")),
                selection("state", "Status", MOVE_STATES).required().default(json!("draft")),
                many2one("partner_id", "Partner", "res.partner"),
                char("invoice_origin", "Origin"),
                char("ref", "Reference"),
                date("date", "Date").required().default_today(),
                date("invoice_date", "Invoice/Bill Date"),
                date("invoice_date_due", "Due Date"),
                selection("payment_state", "Payment Status", PAYMENT_STATES).default(json!("not_paid")),
                one2many("invoice_line_ids", "Invoice lines", "account.move.line", "move_id"),
                monetary("amount_untaxed", "Untaxed Amount"),
                monetary("amount_tax", "Tax"),
                monetary("amount_total", "Total"),
                monetary("amount_residual", "Amount Due"),
                char("currency_code", "Currency").default(json!("EUR")),
            ],
        ),
        ModelDef::new(
            "account.move.line",
            "Journal Item",
            "move_id, sequence, id",
            vec![
                many2one("move_id", "Journal Entry", "account.move").required().cascade(),
                integer("sequence", "Sequence").default(json!(10)),
                many2one("product_id", "Product", "product.product"),
                char("name", "Label"),
                float("quantity", "Quantity").default(json!(1.0)),
                float("price_unit", "Unit Price"),
                float("discount", "Discount (%)"),
                many2many("tax_ids", "Taxes", "account.tax"),
                monetary("price_subtotal", "Subtotal"),
                monetary("price_total", "Total"),
                many2many("sale_line_ids", "Sales Order Lines", "sale.order.line"),
            ],
        ),
    ];
    Registry { models: models.into_iter().map(|model| (model.name, model)).collect() }
}
