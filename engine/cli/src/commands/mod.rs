//! One module per subcommand.

pub mod cluster;
pub mod gen;
pub mod produce;
pub mod run;
pub mod up;
pub mod validate;
