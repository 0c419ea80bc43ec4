//! Lucent: an on-premise AI imaging appliance in one binary.
//!
//! Layers, top to bottom (see ARCHITECTURE.md):
//! - [`cli`]: the command line; [`server`]: `serve` wiring and shutdown;
//! - [`web`]: HTTP (health now, the staff UI later);
//! - [`dicom`]: the DICOM network node (associations, DIMSE, Storage SCP), attribute dump;
//! - [`preprocess`]: pixel decoding, LUTs, rendering, model normalisation, de-identification;
//! - [`store`]: SQLite index and durable instance files; the only module that writes SQL;
//! - [`security`]: the appliance secret and keyed derivations (ring);
//! - [`ml`]: devices, the classifier, training, inference queue, model registry;
//! - [`config`]: typed configuration.

pub mod cli;
pub mod config;
pub mod dicom;
pub mod ml;
pub mod pipeline;
pub mod preprocess;
pub mod search;
pub mod security;
pub mod server;
pub mod store;
pub mod web;
