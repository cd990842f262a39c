//! Test support for wharf.
