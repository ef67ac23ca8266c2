//! Forward calls (see the `forward` service in the schema).

#[allow(unused_imports)]
use crate::{Client, Result, remote};
