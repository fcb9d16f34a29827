//! Deterministic test inputs for the ops that stand in for tract's: one 64-bit LCG (Knuth's MMIX constants)
//! whose states each test maps to the values it needs (coarse grids with ties, signed zeros, infinities).

/// `len` values, each `f` of the next LCG state from `seed`.
pub(super) fn lcg_values(len: usize, seed: u64, mut f: impl FnMut(u64) -> f32) -> Vec<f32> {
    const A: u64 = 6364136223846793005;
    const C: u64 = 1442695040888963407;
    let mut s = seed.wrapping_mul(A).wrapping_add(C);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(A).wrapping_add(C);
            f(s)
        })
        .collect()
}
