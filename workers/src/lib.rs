//! Job handlers of tessera's worker processes.
//!
//! Workers are stateless: they read inputs from object storage, write outputs
//! to object storage and report over the bus; they never touch the database.
//! [`imaging`] is the pure pixel work of generation jobs; [`compress`]
//! streams a selection of objects into a zip upload.

pub mod compress;
pub mod generate;
pub mod imaging;
