//! The process exit codes of every `residency` command, one meaning each, after BSD's
//! sysexits(3) where one fits:
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done (`audit`: clean) |
//! | 1 | refused or failed: the admin API answered with a problem, `audit` found violations, a move did not end `done`, a step of `up` failed |
//! | 2 | invalid command line (clap's usage errors: unknown flag, a value not among the possible values); `audit`: could not run (SPEC §3.5 fixes 0/1/2 for the audit) |
//! | 64 | `EX_USAGE`: a configuration error: no usable admin URL or token, an unreadable or invalid stack.json or key file, an invalid flag value only checked after parsing, a malformed database URL, a missing directory password, a `--pg` database that does not exist |
//! | 69 | `EX_UNAVAILABLE`: a service is unreachable (the gateway's admin API, Postgres) |
//! | 71 | `EX_OSERR`: `up`: a port is in use |
//! | 72 | `EX_OSFILE`: `up`: the `region-node` or `residency-gateway` binary is missing |
//! | 75 | `EX_TEMPFAIL`: `up`: another `up` runs on the same directory |
//! | 76 | `EX_PROTOCOL`: the gateway answered something this CLI does not understand (another version) |
//! | 77 | `EX_NOPERM`: Postgres rejected the login (SQLSTATE 28P01 or 28000) |
//!
//! The gateway and the region node exit 64 on a configuration error too, before binding.

/// `EX_USAGE`: a configuration error.
pub(crate) const CONFIG: u8 = 64;
/// `EX_UNAVAILABLE`: a service is unreachable.
pub(crate) const UNAVAILABLE: u8 = 69;
/// `EX_PROTOCOL`: an answer this CLI does not understand.
pub(crate) const PROTOCOL: u8 = 76;
/// `EX_NOPERM`: Postgres rejected the login.
pub(crate) const NOPERM: u8 = 77;
