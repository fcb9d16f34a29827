pub mod score;
pub mod eval;
