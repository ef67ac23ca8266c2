//! Watch calls (see the `watch` service in the schema).

#[allow(unused_imports)]
use crate::{Client, Result, remote};
