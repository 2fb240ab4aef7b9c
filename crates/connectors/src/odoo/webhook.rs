//! Inbound webhooks from Odoo: not offered.
//!
//! Odoo's automation rules can post a record's fields to a URL ("Send Webhook Notification"),
//! but the request carries no signature and no delivery id, so erpsync could not tell a genuine
//! delivery from a forged one, nor deduplicate retries. Changes are read by polling
//! `write_date` instead (see [`crate::odoo::source`]); the receiver exists so that the module
//! has the same rooms as every connector and says why in one place.

/// Why the odoo connector has no webhook receiver, for `erpsync` to print.
pub const NO_WEBHOOKS: &str =
    "odoo's webhook notifications are not signed; the odoo connector reads changes by write_date instead";
