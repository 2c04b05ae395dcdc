//! Cost engine: the model price table and the per-call cost arithmetic (`prices`), and pricing
//! calls at run time, re-pricing and API-added prices (`pricing`).

pub mod prices;
pub mod pricing;

pub use prices::{call_cost, Price, PriceEntry, PriceError, PriceTable};
