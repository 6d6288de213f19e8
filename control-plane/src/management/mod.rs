//! Read-only HTTP JSON endpoint.
