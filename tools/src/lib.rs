//! Load and measurement tools for ferroswitch; see tools/README.md.
