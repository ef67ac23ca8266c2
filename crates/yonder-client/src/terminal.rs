//! Terminal calls (see the `terminal` service in the schema).

#[allow(unused_imports)]
use crate::{Client, Result, remote};
