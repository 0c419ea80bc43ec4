//! Preprocessing: what is done to instances after they are stored and before they leave
//! Lucent or reach a model (pixel decoding, LUTs and rendering come with the pixel pipeline).
//!
//! Owns: de-identification ([`deid`]).
//! Must not: write SQL or touch the store's files; it reads the files it is given and writes
//! only where it is told.

pub mod deid;
