//! Where a model's time goes in tract, node by node: `cargo run --release --example op_profile -- MODEL
//! [--models-dir DIR] [--threads N] [--runs N] [--op NAME]`. Times summed by op, then the slowest nodes with
//! their input and output shapes (of one op with `--op`). Inputs are a fixed ramp (the op costs of these CNNs
//! do not depend on pixel values; a DETR's top-k does, a little).

use anyhow::{bail, Context, Result};
use pancap::engine::{profile_ops, DType, Tensor, TensorData};
use pancap::models::Manifest;
use std::collections::BTreeMap;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let (mut dir, mut threads, mut runs, mut only) = ("models".to_string(), None, 10usize, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--models-dir" => dir = value()?,
            "--threads" => threads = Some(value()?.parse()?),
            "--runs" => runs = value()?.parse()?,
            "--op" => only = Some(value()?),
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
    profile_ops(&spec, threads, &inputs, 1)?; // warm-up
    let times = profile_ops(&spec, threads, &inputs, runs)?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / runs.max(1) as f64;
    println!("{model}: {:.2} ms a run in its nodes ({runs} runs)", times.iter().map(|t| ms(t.total)).sum::<f64>());
    let mut by_op: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for t in &times {
        let e = by_op.entry(&t.op).or_default();
        e.0 += ms(t.total);
        e.1 += 1;
    }
    let mut by_op: Vec<_> = by_op.into_iter().collect();
    by_op.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    for (op, (t, n)) in by_op.iter().take(20) {
        println!("{t:8.2} ms {n:4} × {op}");
    }
    println!("slowest nodes:");
    for t in times.iter().filter(|t| only.as_ref().is_none_or(|o| *o == t.op)).take(20) {
        println!("{:8.3} ms {} {:?} -> {:?} {}", ms(t.total), t.op, t.inputs, t.output, t.node);
    }
    Ok(())
}
