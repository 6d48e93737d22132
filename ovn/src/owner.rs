//! placeholder
pub struct Owner;
pub struct Desired;
