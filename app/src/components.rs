//! Reusable pieces of the pages: the charts (`line_chart` for training curves, `sim_chart` for the
//! demo's similarity per step), the demo's validated number fields (`num_field`), and the admin
//! launch form's fields and job specs (`launch_form`).

pub mod launch_form;
pub mod line_chart;
pub mod num_field;
pub mod sim_chart;
