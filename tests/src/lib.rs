//! Helpers shared by the integration tests and their worker binaries.
