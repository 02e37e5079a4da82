//! One module per page.

pub mod demo;
pub mod home;
pub mod status;
