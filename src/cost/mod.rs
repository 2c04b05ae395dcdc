//! Cost engine: the model price table and the per-call cost arithmetic.

pub mod prices;

pub use prices::{call_cost, Price, PriceEntry, PriceError, PriceTable};
