//! Harness for end-to-end tests: fresh databases per test, region nodes on port 0.
