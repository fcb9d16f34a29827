//! Where a model's time goes in tract, node by node: `cargo run --release --example op_profile -- MODEL
//! [--models-dir DIR] [--threads N] [--runs N] [--op NAME] [--vs-tract-ops]`. Times summed by op, then the
//! slowest nodes with their input and output shapes (of one op with `--op`). `--vs-tract-ops` also times the plan
//! with tract's own ops where pancap replaces them, the two plans alternating every five runs in one process, and
//! prints both totals. Inputs are a fixed ramp (the op costs of these CNNs do not depend on pixel values; a
//! DETR's top-k does, a little).

use anyhow::{bail, Context, Result};
use pancap::engine::{profile_ops, DType, Tensor, TensorData};
use pancap::models::Manifest;
use std::collections::BTreeMap;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let (mut dir, mut threads, mut runs, mut only, mut versus) = ("models".to_string(), None, 10usize, None, false);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--models-dir" => dir = value()?,
            "--threads" => threads = Some(value()?.parse()?),
            "--runs" => runs = value()?.parse()?,
            "--op" => only = Some(value()?),
            "--vs-tract-ops" => versus = true,
            _ if model.is_none() => model = Some(a),
            _ => bail!("unexpected argument {a}"),
        }
    }
    let Some(model) = model else { bail!("usage: op_profile MODEL [--models-dir DIR] [--threads N] [--runs N] [--op NAME]") };
    let spec = Manifest::by_name(&model)?.model_spec(std::path::Path::new(&dir));
    let inputs = spec
        .inputs
        .iter()
        .map(|i| {
            let n: usize = i.shape.iter().product();
            let data = match i.dtype {
                DType::F32 => TensorData::F32((0..n).map(|k| (k % 255) as f32 / 255.0).collect()),
                DType::U8 => TensorData::U8((0..n).map(|k| (k % 255) as u8).collect()),
                // a DETR's original-size input
                DType::I64 => TensorData::I64(vec![416; n]),
                DType::I32 => TensorData::I32(vec![416; n]),
            };
            Ok(Tensor::new(i.shape.clone(), data)?)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut times = Vec::new();
    let mut plain = Vec::new();
    // rounds of a few runs each, the two plans alternating round by round
    let rounds = runs.div_ceil(5);
    for r in 0..rounds {
        let n = (runs - r * 5).min(5);
        add(&mut times, profile_ops(&spec, threads, &inputs, n, true)?);
        if versus {
            add(&mut plain, profile_ops(&spec, threads, &inputs, n, false)?);
        }
    }
    times.sort_by_key(|t| std::cmp::Reverse(t.total));
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / runs.max(1) as f64;
    let total = |t: &[pancap::engine::OpTime]| t.iter().map(|t| ms(t.total)).sum::<f64>();
    println!("{model}: {:.2} ms a run in its nodes ({runs} runs)", total(&times));
    if versus {
        println!("  with tract's own ops: {:.2} ms a run (alternating every five runs)", total(&plain));
        for (op, t) in by_op(&plain).iter().take(12) {
            println!("  {:8.2} ms {:4} × {op}", t.0 / runs as f64 * 1000.0, t.1);
        }
        println!("with pancap's ops:");
    }
    for (op, t) in by_op(&times).iter().take(20) {
        println!("{:8.2} ms {:4} × {op}", t.0 / runs as f64 * 1000.0, t.1);
    }
    println!("slowest nodes:");
    for t in times.iter().filter(|t| only.as_ref().is_none_or(|o| *o == t.op)).take(20) {
        println!("{:8.3} ms {} {:?} -> {:?} {}", ms(t.total), t.op, t.inputs, t.output, t.node);
    }
    Ok(())
}

/// Adds one run's node times to the sums (same plan, same node order).
fn add(sums: &mut Vec<pancap::engine::OpTime>, run: Vec<pancap::engine::OpTime>) {
    for t in run {
        match sums.iter_mut().find(|s| s.node == t.node) {
            Some(s) => s.total += t.total,
            None => sums.push(t),
        }
    }
}

/// Seconds and node count by op, slowest first.
fn by_op(times: &[pancap::engine::OpTime]) -> Vec<(String, (f64, usize))> {
    let mut by: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for t in times {
        let e = by.entry(t.op.clone()).or_default();
        e.0 += t.total.as_secs_f64();
        e.1 += 1;
    }
    let mut by: Vec<_> = by.into_iter().collect();
    by.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    by
}
