pub mod score;
pub mod eval;
pub mod stream;
