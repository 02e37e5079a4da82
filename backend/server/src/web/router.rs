//! `cemiface serve`: the web app (server-rendered Leptos pages, hydrated in the browser), the
//! server functions and `/healthz`, with graceful shutdown on SIGINT/SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::watch;
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

use axum::routing::get;
use axum::Router;
use cemiface_app::status::StatusSource;
use cemiface_app::{shell, App};
use leptos::prelude::provide_context;
use leptos_axum::{file_and_error_handler_with_context, generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::web::health::{healthz, system_status};
use crate::web::state::AppState;

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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::demo::client::assign,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::web::client_addr::assign,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Headers every response carries (unless a handler set its own): no framing by other sites
/// (clickjacking), no `<base>`/plugin injection, no MIME sniffing, no full URLs in Referer.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "frame-ancestors 'none'; base-uri 'self'; object-src 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
];

async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut res = next.run(req).await;
    for (name, value) in SECURITY_HEADERS {
        res.headers_mut()
            .entry(name)
            .or_insert(axum::http::HeaderValue::from_static(value));
    }
    res
}

/// How long a client may take: to send a request's headers (slow-header connections are closed),
/// and between two pieces of a request body (a stalled upload ends with an error).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_read: Duration,
    pub body_idle: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            body_idle: Duration::from_secs(20),
        }
    }
}

/// Serves until `shutdown` resolves, then stops accepting and lets open requests finish.
///
/// Each connection is served by hyper's HTTP/1 connection with a timer, so a client that opens a
/// connection and never finishes its headers is dropped after `limits.header_read` (`axum::serve`
/// sets no timer, and hyper's header timeout needs one). Handlers see the peer's address as
/// `ConnectInfo<SocketAddr>`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ConnLimits,
) -> anyhow::Result<()> {
    let app = router(state).layer(RequestBodyTimeoutLayer::new(limits.body_idle));
    // `stop` tells connections to finish; `alive` has one receiver per open connection.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (alive_tx, alive_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = app.clone().map_request(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.map(Body::new)
        });
        let (mut stop, alive) = (stop_rx.clone(), alive_rx.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(limits.header_read);
            let conn = http
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                }
                () = async { drop(stop.wait_for(|s| *s).await) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_rx);
    alive_tx.closed().await;
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
