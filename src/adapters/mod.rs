//! Adapters: the implementations of the domain's ports and of the outside
//! services the application talks to.

pub mod bus;
pub mod google;
pub mod mail;
pub mod secrets;
pub mod storage;
pub mod store;
