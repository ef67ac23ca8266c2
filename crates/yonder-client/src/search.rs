//! Search calls (see the `search` service in the schema).

#[allow(unused_imports)]
use crate::{Client, Result, remote};
