//! `erpsync sim <name>`: a simulator of an external API, served until Ctrl-C, so a connector
//! can be tried without an account at the vendor.

use crate::SimCommand;
use anyhow::{Context, Result};
use erpsync_sim::{odoo, shopify, woocommerce};
use std::process::ExitCode;

pub async fn run(which: &SimCommand) -> Result<ExitCode> {
    match which {
        SimCommand::Shopify { port, products, seed } => {
            let config = shopify::ShopifyConfig {
                port: *port,
                seed: Some(shopify::SeedConfig { seed: *seed, products: *products, ..shopify::SeedConfig::default() }),
                ..shopify::ShopifyConfig::default()
            };
            let running = shopify::ShopifySim::start(config).await.context("starting the Shopify simulator")?;
            println!("Shopify simulator at {}", running.base_url());
            println!("  GraphQL:      POST {}", running.graphql_url("2026-10"));
            println!("  access token: {}", running.access_token());
            println!("  control API:  {}/_sim/faults, /_sim/counters, /_sim/seed, /_sim/orders", running.base_url());
            println!("press Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            running.shutdown().await;
        }
        SimCommand::Woocommerce { port, products, seed } => {
            let config = woocommerce::WooSimConfig {
                port: *port,
                seed: Some(woocommerce::SeedConfig {
                    seed: *seed,
                    simple_products: products / 2,
                    variable_products: products - products / 2,
                    ..woocommerce::SeedConfig::default()
                }),
                ..woocommerce::WooSimConfig::default()
            };
            let key = config.keys.first().cloned();
            let running = woocommerce::WooSim::start(config).await.context("starting the WooCommerce simulator")?;
            println!("WooCommerce simulator at {}  (plain HTTP: OAuth 1.0a one-legged)", running.base_url());
            println!("  REST API:     {}/wp-json/wc/v3", running.base_url());
            if let Some(key) = key {
                println!("  consumer key: {}  secret: {}", key.consumer_key, key.consumer_secret);
            }
            println!("  control API:  {}/_sim/...", running.base_url());
            println!("press Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            running.shutdown().await;
        }
        SimCommand::Odoo { port, products, seed } => {
            let config = odoo::OdooSimConfig {
                bind: std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
                seed: Some(odoo::SeedConfig { seed: *seed, products: *products, ..odoo::SeedConfig::default() }),
                ..odoo::OdooSimConfig::default()
            };
            let (db, login, api_key) = (config.db.clone(), config.login.clone(), config.api_key.clone());
            let running = odoo::OdooSim::start(config).await.context("starting the Odoo simulator")?;
            println!("Odoo simulator at {}", running.base_url());
            println!("  JSON-RPC:  POST {}/jsonrpc   (db {db:?}, login {login:?})", running.base_url());
            println!(
                "  JSON-2:    POST {}/json/2/<model>/<method>   (Authorization: bearer {api_key})",
                running.base_url()
            );
            println!("  control:   {}/_sim/faults, /_sim/counters, /_sim/seed, /_sim/orders", running.base_url());
            println!("press Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
            running.shutdown().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}
