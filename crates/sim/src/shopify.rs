//! Shopify Admin GraphQL simulator (being written).
