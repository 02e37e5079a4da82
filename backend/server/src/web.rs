//! Web plumbing shared by the demo, the admin panel and the remote API.

pub mod client_addr;
