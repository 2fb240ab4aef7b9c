//! The web dashboard at `/`: server-rendered pages (askama), htmx for actions, one small CSS
//! file; both embedded in the binary. No front-end build.
//!
//! Signing in takes an access token of the admin API, kept in an `HttpOnly`, `SameSite=Strict`
//! cookie; the token's role decides, as in the API: a viewer sees, an operator also acts. Every
//! action is a POST that needs the cookie and the session's CSRF token in the form (an HMAC of
//! the cookie under a key of this process), and goes through the same `Engine` methods as the
//! API, so it is audited as `token:<name>`.

mod chart;
mod pages;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use erpsync_engine::Engine;
use erpsync_store::TokenRole;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The cookie holding the access token.
const COOKIE: &str = "erpsync_session";
/// How long a sign-in lasts, in seconds.
const SESSION_SECONDS: u32 = 12 * 3600;

#[derive(Clone)]
pub(crate) struct Dashboard {
    engine: Arc<Engine>,
    /// Key of the CSRF tokens: random per process, so a restart asks forms to be reloaded.
    csrf_key: Arc<[u8; 32]>,
    /// Set the cookie's `Secure` flag: the server speaks HTTPS itself.
    secure: bool,
}

/// Who is signed in.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub name: String,
    pub role: TokenRole,
    pub csrf: String,
}

impl Session {
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }

    pub fn can_act(&self) -> bool {
        self.role >= TokenRole::Operator
    }
}

/// The dashboard's routes, for [`crate::router`].
pub fn router(engine: Arc<Engine>) -> Router<Arc<Engine>> {
    let settings = &engine.config().server;
    let secure = settings.tls_cert.is_some() && settings.tls_key.is_some();
    let state = Dashboard { engine, csrf_key: Arc::new(rand::random()), secure };
    Router::new()
        .route("/", get(pages::overview))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/runs", get(pages::runs))
        .route("/records", get(pages::records))
        .route("/failures", get(pages::failures))
        .route("/failures/{id}", get(pages::failure))
        .route("/failures/{id}/payload", post(pages::edit_payload))
        .route("/failures/{id}/retry", post(pages::retry))
        .route("/failures/{id}/discard", post(pages::discard))
        .route("/flows/{flow}/{action}", post(pages::flow_action))
        .route("/alerts", get(pages::alerts))
        .route("/assets/{file}", get(asset))
        .with_state(state)
}

impl Dashboard {
    fn csrf_for(&self, secret: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.csrf_key.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(b"erpsync dashboard csrf\0");
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The signed-in session of this request, if its cookie holds an active token.
    async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>, Response> {
        let Some(secret) = session_cookie(headers) else { return Ok(None) };
        match self.engine.authenticate(&secret).await {
            Ok(Some(token)) => Ok(Some(Session { name: token.name, role: token.role, csrf: self.csrf_for(&secret) })),
            Ok(None) => Ok(None),
            Err(error) => {
                tracing::error!(error = %error, "Dashboard sign-in check failed.");
                Err(pages::error_page(StatusCode::INTERNAL_SERVER_ERROR, None, &format!("internal error: {error}")))
            }
        }
    }

    /// For pages: the session, or a redirect to the sign-in page.
    async fn viewer(&self, headers: &HeaderMap) -> Result<Session, Response> {
        match self.session(headers).await? {
            Some(session) => Ok(session),
            None => Err(Redirect::to("/login").into_response()),
        }
    }

    /// For actions: a signed-in operator whose form carries this session's CSRF token; 403
    /// otherwise (401 without a session).
    async fn operator(&self, headers: &HeaderMap, csrf: &str) -> Result<Session, Response> {
        let Some(session) = self.session(headers).await? else {
            return Err(pages::error_page(StatusCode::UNAUTHORIZED, None, "sign in first"));
        };
        if !bool::from(session.csrf.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(pages::error_page(
                StatusCode::FORBIDDEN,
                Some(&session),
                "the form is stale or was not sent by this dashboard: reload the page and try again",
            ));
        }
        if !session.can_act() {
            let message =
                format!("this needs the operator role; token {:?} is {}", session.name, session.role.as_str());
            return Err(pages::error_page(StatusCode::FORBIDDEN, Some(&session), &message));
        }
        Ok(session)
    }

    fn session_cookie(&self, secret: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let value = format!("{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}");
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("erpsync_session=; Path=/"))
    }

    fn cleared_cookie(&self) -> HeaderValue {
        HeaderValue::from_static("erpsync_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

#[derive(rust_embed::Embed)]
#[folder = "src/assets"]
struct Assets;

async fn asset(Path(file): Path<String>) -> Response {
    let Some(content) = Assets::get(&file) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let content_type = match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], content.data.into_owned())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("theme=dark; erpsync_session=est_abc ; other=1"));
        assert_eq!(session_cookie(&headers).as_deref(), Some("est_abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("erpsync_session="));
        assert_eq!(session_cookie(&headers), None);
    }
}
