//! Residency Gateway: the public front door (not built yet; see issue "[2/5] Gateway").
//!
//! This crate is a placeholder so the workspace layout is final. It contains no request
//! handling; the README's feature table lists the gateway as not built.
