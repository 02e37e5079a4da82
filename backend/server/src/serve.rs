//! `cemiface serve`: the web app (server-rendered Leptos pages, hydrated in the browser), the
//! server functions and `/healthz`, with graceful shutdown on SIGINT/SIGTERM.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use cemiface_app::status::StatusSource;
use cemiface_app::{shell, App};
use leptos::prelude::provide_context;
use leptos_axum::{file_and_error_handler_with_context, generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::health::{healthz, system_status};
use crate::state::AppState;

/// The whole HTTP surface, without binding a socket (tests drive it with `oneshot`).
pub fn router(state: AppState) -> Router {
    let status_state = state.clone();
    // Context every Leptos render and server-function call gets: how to read the system status.
    let context = move || {
        let st = status_state.clone();
        provide_context(StatusSource(Arc::new(move || {
            let st = st.clone();
            Box::pin(async move { system_status(st).await.map_err(|e| format!("{e:#}")) })
        })));
    };
    let options = state.leptos.clone();
    Router::new()
        .route("/healthz", get(healthz))
        .merge(crate::demo::routes())
        .merge(crate::jobs::admin_api::routes())
        .merge(crate::jobs::remote_api::routes())
        .leptos_routes_with_context(&state, generate_route_list(App), context.clone(), move || {
            shell(options.clone())
        })
        .fallback(file_and_error_handler_with_context::<AppState, _>(context, shell))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::demo::client::assign))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Headers every response carries (unless a handler set its own): no framing by other sites
/// (clickjacking), no `<base>`/plugin injection, no MIME sniffing, no full URLs in Referer.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("content-security-policy", "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let mut res = next.run(req).await;
    for (name, value) in SECURITY_HEADERS {
        res.headers_mut()
            .entry(name)
            .or_insert(axum::http::HeaderValue::from_static(value));
    }
    res
}

/// Serves until `shutdown` resolves, then stops accepting and lets open requests finish.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
