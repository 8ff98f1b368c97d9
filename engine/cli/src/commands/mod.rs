//! One module per subcommand.

pub mod gen;
pub mod run;
pub mod validate;
