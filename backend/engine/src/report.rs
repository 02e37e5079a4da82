//! Pictures and measurements for people: the chart renderer (`plot`) and the control report that
//! measures how well a trained generator hits its similarity targets under several judges.

pub mod control;
pub mod plot;
