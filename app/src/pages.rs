//! One module per page.

pub mod admin;
pub mod admin_job;
pub mod demo;
pub mod home;
pub mod status;
