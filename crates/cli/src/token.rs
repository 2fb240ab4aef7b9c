//! `erpsync token create|list|revoke`: access tokens of the admin API. A new token's secret is
//! printed once, on standard output only; the store keeps its SHA-256 digest.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use erpsync_engine::Engine;
use erpsync_store::TokenRole;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token and print its secret (shown this once).
    Create {
        #[arg(long)]
        name: String,
        /// viewer (reads), operator (also acts on flows and failures) or admin (also tokens).
        #[arg(long, value_parser = ["viewer", "operator", "admin"])]
        role: String,
        #[arg(long)]
        json: bool,
    },
    /// Active tokens (with --all, revoked ones too); never their secrets.
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Revoke the active token with this name; it stops working at once.
    Revoke { name: String },
}

pub(crate) async fn run(engine: &Engine, command: TokenCommand, actor: &str) -> Result<ExitCode> {
    match command {
        TokenCommand::Create { name, role, json } => {
            let role = TokenRole::parse(&role).with_context(|| format!("unknown role {role:?}"))?;
            let issued =
                engine.create_token(&name, role, actor).await.with_context(|| format!("creating token {name:?}"))?;
            if json {
                let value = serde_json::json!({ "token": issued.token, "secret": issued.secret });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                eprintln!("token {name:?} ({}) created; this is its secret, shown only now:", role.as_str());
                println!("{}", issued.secret);
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { all, json } => {
            let tokens = engine.store().api_tokens(all).await.context("reading tokens")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tokens)?);
                return Ok(ExitCode::SUCCESS);
            }
            if tokens.is_empty() {
                println!("no tokens; create one with `erpsync token create --name <name> --role viewer`");
                return Ok(ExitCode::SUCCESS);
            }
            println!("{:<24} {:<9} {:<20} {:<17} {:<17}", "NAME", "ROLE", "CREATED BY", "CREATED", "REVOKED");
            for token in tokens {
                println!(
                    "{:<24} {:<9} {:<20} {:<17} {:<17}",
                    token.name,
                    token.role.as_str(),
                    token.created_by,
                    token.created_at.format("%Y-%m-%d %H:%M"),
                    token.revoked_at.map(|at| at.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "-".into())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { name } => {
            if !engine.revoke_token(&name, actor).await.with_context(|| format!("revoking token {name:?}"))? {
                bail!("no active token is called {name:?} (see `erpsync token list`)");
            }
            println!("token {name:?} revoked");
            Ok(ExitCode::SUCCESS)
        }
    }
}
