//! Minimum-cost one-to-one assignment (the Hungarian method), on pathfinding's Kuhn–Munkres.

use pathfinding::kuhn_munkres::kuhn_munkres_min;
use pathfinding::matrix::Matrix;

/// Costs are compared at this resolution (integer Kuhn–Munkres): 1e-6.
const SCALE: f64 = 1e6;
/// A cost that no finite cost in the tiers comes near; NaN is treated as this.
pub const UNMATCHABLE: f64 = 1e6;

/// Assigns rows to columns one to one, minimising the summed cost; rectangular matrices assign every element of
/// the smaller side. Returns `(row, column)` pairs sorted by row.
pub fn min_cost_assignment(costs: &[Vec<f64>]) -> Vec<(usize, usize)> {
    let rows = costs.len();
    let cols = costs.iter().map(Vec::len).max().unwrap_or(0);
    if rows == 0 || cols == 0 {
        return Vec::new();
    }
    let at = |r: usize, c: usize| -> i64 {
        let v = costs.get(r).and_then(|row| row.get(c)).copied().unwrap_or(UNMATCHABLE);
        let v = if v.is_nan() { UNMATCHABLE } else { v.clamp(-UNMATCHABLE, UNMATCHABLE) };
        (v * SCALE).round() as i64
    };
    // kuhn_munkres needs rows <= columns: transpose when there are more rows
    let transpose = rows > cols;
    let (r, c) = if transpose { (cols, rows) } else { (rows, cols) };
    let m = Matrix::from_fn(r, c, |(i, j)| if transpose { at(j, i) } else { at(i, j) });
    let (_, assignment) = kuhn_munkres_min(&m);
    let mut pairs: Vec<(usize, usize)> =
        assignment.into_iter().enumerate().map(|(i, j)| if transpose { (j, i) } else { (i, j) }).collect();
    pairs.sort_unstable();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(costs: &[Vec<f64>]) -> f64 {
        fn go(costs: &[Vec<f64>], row: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64, cols: usize) {
            if row == costs.len() {
                *best = best.min(acc);
                return;
            }
            for c in 0..cols {
                if !used[c] {
                    used[c] = true;
                    go(costs, row + 1, used, acc + costs[row][c], best, cols);
                    used[c] = false;
                }
            }
        }
        // assign the smaller side fully
        let rows = costs.len();
        let cols = costs[0].len();
        let t: Vec<Vec<f64>> = if rows > cols { (0..cols).map(|c| (0..rows).map(|r| costs[r][c]).collect()).collect() } else { costs.to_vec() };
        let mut best = f64::INFINITY;
        let n = t[0].len();
        go(&t, 0, &mut vec![false; n], 0.0, &mut best, n);
        best
    }

    #[test]
    fn picks_the_cheaper_diagonal() {
        let p = min_cost_assignment(&[vec![-1000.0, 5.0], vec![3.0, -1000.5]]);
        assert_eq!(p, vec![(0, 0), (1, 1)]);
    }

    #[test]
    fn rectangular_both_ways() {
        let tall = vec![vec![1.0], vec![-5.0], vec![0.0]];
        assert_eq!(min_cost_assignment(&tall), vec![(1, 0)]);
        let wide = vec![vec![1.0, -5.0, 0.0]];
        assert_eq!(min_cost_assignment(&wide), vec![(0, 1)]);
        assert!(min_cost_assignment(&[]).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn matches_brute_force(r in 1usize..6, c in 1usize..6, seed in proptest::collection::vec(-1100.0f64..100.0, 36)) {
            let costs: Vec<Vec<f64>> = (0..r).map(|i| (0..c).map(|j| (seed[i * 6 + j] * 1000.0).round() / 1000.0).collect()).collect();
            let pairs = min_cost_assignment(&costs);
            proptest::prop_assert_eq!(pairs.len(), r.min(c));
            let mut rows: Vec<usize> = pairs.iter().map(|p| p.0).collect();
            let mut cols: Vec<usize> = pairs.iter().map(|p| p.1).collect();
            rows.dedup(); cols.sort_unstable(); cols.dedup();
            proptest::prop_assert_eq!(rows.len(), pairs.len());
            proptest::prop_assert_eq!(cols.len(), pairs.len());
            let total: f64 = pairs.iter().map(|&(i, j)| costs[i][j]).sum();
            proptest::prop_assert!((total - brute_force(&costs)).abs() < 1e-6, "{} vs {}", total, brute_force(&costs));
        }
    }
}
