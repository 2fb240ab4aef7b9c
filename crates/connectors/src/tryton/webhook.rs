//! Webhooks: Tryton sends none.
//!
//! Tryton has no outbound webhook mechanism in its standard modules (its Shopify module
//! receives webhooks, it does not send them). Changes are found by polling with the
//! incremental reads of [`crate::tryton::source`]; schedule the flows reading from Tryton on an
//! interval. `build_webhook_receiver` returns `None` for Tryton systems, so a delivery to
//! `/webhooks/<tryton system>` is refused.
