//! Web plumbing below the demo, the admin panel and the remote API: the router and its state, errors
//! (with field errors for forms), `/healthz` and the status page's data, admin sessions and API
//! tokens with one rate limiter, and the client address behind proxies.

pub mod auth;
pub mod client_addr;
pub mod error;
pub mod health;
pub mod rate_limit;
pub mod router;
pub mod state;
