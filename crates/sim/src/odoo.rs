//! Odoo JSON-RPC simulator (being written).
