//! HTTP routes: the contract's phone routes, and the operator routes around them.
pub mod body;
pub mod ops;
pub mod phone;
