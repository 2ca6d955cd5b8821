//! Workflows that run: the step language ([`definition`], [`template`]), connector calls over
//! HTTP ([`connector`]) and the worker that runs queued executions ([`worker`]).

pub(crate) mod action;
pub(crate) mod connector;
pub(crate) mod definition;
pub(crate) mod template;
pub(crate) mod worker;
