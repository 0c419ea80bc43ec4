//! Lucent's integration tests: one binary (every extra test binary re-links the whole stack).
//! They drive the real `lucent` binary against real DICOM peers (dcmtk) and real SQLite.

mod support;
mod synth;

mod bad_input;
mod browser;
mod cli;
mod concurrency;
mod crash;
mod deid;
mod limits;
mod ml;
mod pixels;
mod render;
mod roundtrip;
mod web;
