//! The learned model: gradient-boosted regression trees (the `gbdt` crate: pure Rust, trains and
//! serialises with serde; `perpetual` needs a nightly compiler) predicting the log of a
//! candidate's end-to-end GFLOPS from shape and kernel features, for shapes never measured.
//!
//! One model per host, trained on the tuning databases of the host's devices and stored as JSON with
//! the devices it knows, its feature names and its held-out quality. Quality is measured by k-fold
//! over shapes: every shape is predicted by a model that never saw it.

use super::db::{write_atomically, DataSource, TuningDb};
use crate::device::BackendKind;
use crate::error::{Error, Result};
use crate::kernel::{find, KernelSpec};
use crate::problem::Shape;
use gbdt::config::Config;
use gbdt::decision_tree::{Data, DataVec};
use gbdt::gradient_boost::GBDT;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const FORMAT: &str = "tilegemm-selector-model";
const VERSION: u32 = 3;

/// The seed's features plus backend and device: sizes and work in log2, the tiling's parameters.
pub const FEATURES: [&str; 21] = [
    "log2_m",
    "log2_n",
    "log2_k",
    "log2_total_ops",
    "log2_bytes",
    "log2_intensity",
    "tile_m",
    "tile_n",
    "threads",
    "vector_width",
    "tile_k",
    "buffers",
    "prefetch",
    "group_m",
    "tiles_m",
    "tiles_n",
    "log2_total_tiles",
    "log2_ops_per_tile",
    "work_per_thread",
    "backend",
    "device",
];

/// Held-out quality of a model: each shape predicted by a model trained without it. Judged on the
/// settled end-to-end GFLOPS the model learns ([`TuningDb::e2e_estimate`]), and, for comparison,
/// on each row's own single end-to-end measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Folds actually used: the requested count, clamped to between 2 and the number of shapes.
    pub folds: usize,
    /// Shapes judged, each by a model trained without it.
    pub shapes: usize,
    /// Share of shapes whose predicted best pair is the measured best.
    pub top1: f64,
    /// Best GFLOPS ÷ chosen GFLOPS − 1, averaged over shapes (0: always the best).
    pub mean_regret: f64,
    /// The largest regret (best GFLOPS ÷ chosen GFLOPS − 1) over the shapes.
    pub max_regret: f64,
    /// The same three against the raw per-row end-to-end measurements (copy noise included).
    #[serde(default)]
    pub raw: Option<Regret>,
}

/// Top-1 and regret of a set of choices against one notion of the best.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Regret {
    /// Share of shapes (0 to 1) whose chosen pair is the best.
    pub top1: f64,
    /// Best GFLOPS ÷ chosen GFLOPS − 1, averaged over shapes.
    pub mean_regret: f64,
    /// The largest regret over the shapes.
    pub max_regret: f64,
}

impl Regret {
    /// From (hit, regret) per shape.
    fn of(outcomes: &[(bool, f64)]) -> Self {
        let n = outcomes.len().max(1) as f64;
        Regret {
            top1: outcomes.iter().filter(|(hit, _)| *hit).count() as f64 / n,
            mean_regret: outcomes.iter().map(|(_, r)| r).sum::<f64>() / n,
            max_regret: outcomes.iter().map(|(_, r)| *r).fold(0.0, f64::max),
        }
    }
}

/// A trained model and what it was trained on.
#[derive(Serialize, Deserialize)]
pub struct Model {
    /// Always `tilegemm-selector-model`: marks the file as a selector model.
    pub format: String,
    /// Layout version of the file (this build reads 3).
    pub version: u32,
    /// Keys of the devices it knows; the `device` feature is an index into this list.
    pub devices: Vec<String>,
    /// Names of the input features, in order; a model is only loaded when they equal [`FEATURES`].
    pub features: Vec<String>,
    /// Measurements (tuning-database rows) it was trained on.
    pub rows: usize,
    /// Held-out quality; None when trained on fewer than two shapes.
    pub quality: Option<Quality>,
    booster: GBDT,
}

/// One (shape, device, kernel) with its features, and the measured value where known.
struct Sample {
    shape: (usize, usize, usize),
    device: usize,
    kernel: String,
    features: [f64; 21],
    /// Settled end-to-end GFLOPS: what the model learns and is judged on.
    e2e_gflops: f64,
    /// This row's own end-to-end measurement.
    measured_e2e_gflops: f64,
}

/// The model's number for a backend (a new backend needs its own).
fn backend_id(backend: BackendKind) -> f64 {
    match backend {
        BackendKind::Cpu => 0.0,
        BackendKind::Wgpu => 1.0,
        BackendKind::Ocl => 2.0,
    }
}

/// The feature vector of `kernel` on the device with index `device`.
pub fn features(
    m: usize,
    n: usize,
    k: usize,
    backend: BackendKind,
    device: usize,
    kernel: &str,
) -> [f64; 21] {
    let log2 = |x: f64| x.max(1.0).log2();
    let spec = find(kernel);
    let spec_value = |f: fn(&KernelSpec) -> f64| spec.map(f).unwrap_or(0.0);
    let (tile_m, tile_n) = (
        spec_value(|s| s.tile_m as f64),
        spec_value(|s| s.tile_n as f64),
    );
    let threads = spec_value(|s| s.invocations() as f64);
    let tiles_m = if tile_m > 0.0 {
        (m as f64 / tile_m).ceil()
    } else {
        0.0
    };
    let tiles_n = if tile_n > 0.0 {
        (n as f64 / tile_n).ceil()
    } else {
        0.0
    };
    let total_ops = 2.0 * m as f64 * n as f64 * k as f64;
    // What a host-slice call with β = 0 moves: A and B in, C out. Copies dominate a GPU's
    // end-to-end time wherever the arithmetic intensity is low.
    let bytes = 4.0 * (m as f64 * k as f64 + k as f64 * n as f64 + m as f64 * n as f64);
    let total_tiles = tiles_m * tiles_n;
    [
        log2(m as f64),
        log2(n as f64),
        log2(k as f64),
        log2(total_ops),
        log2(bytes),
        log2(total_ops / bytes),
        tile_m,
        tile_n,
        threads,
        spec_value(|s| s.vector_width as f64),
        spec_value(|s| s.tile_k as f64),
        spec_value(|s| s.buffers as f64),
        spec_value(|s| s.prefetch as u8 as f64),
        spec_value(|s| s.group_m as f64),
        tiles_m,
        tiles_n,
        log2(total_tiles),
        log2(if total_tiles > 0.0 {
            total_ops / total_tiles
        } else {
            total_ops
        }),
        if threads > 0.0 {
            tile_m * tile_n / threads
        } else {
            0.0
        },
        backend_id(backend),
        device as f64,
    ]
}

fn samples(databases: &[TuningDb]) -> Vec<Sample> {
    let mut out = Vec::new();
    for (device, db) in databases.iter().enumerate() {
        for row in db
            .rows
            .iter()
            .filter(|r| r.e2e_gflops > 0.0 && r.gflops > 0.0)
        {
            let shape = Shape::new(row.m, row.n, row.k);
            out.push(Sample {
                shape: (row.m, row.n, row.k),
                device,
                kernel: row.kernel.clone(),
                features: features(row.m, row.n, row.k, db.backend, device, &row.kernel),
                e2e_gflops: db
                    .e2e_estimate(shape, &row.kernel)
                    .unwrap_or(row.e2e_gflops),
                measured_e2e_gflops: row.e2e_gflops,
            });
        }
    }
    out
}

/// Trains on `samples`, predicting ln(e2e GFLOPS). Deterministic: no row or feature sampling.
fn fit(samples: &[&Sample]) -> GBDT {
    let mut config = Config::new();
    config.set_feature_size(FEATURES.len());
    config.set_max_depth(5);
    config.set_min_leaf_size(1);
    config.set_iterations(300);
    config.set_shrinkage(0.1);
    config.set_loss("SquaredError");
    let mut data: DataVec = samples
        .iter()
        .map(|s| {
            let features = s.features.iter().map(|&x| x as f32).collect();
            Data::new_training_data(features, 1.0, s.e2e_gflops.ln() as f32, None)
        })
        .collect();
    let mut booster = GBDT::new(&config);
    booster.fit(&mut data);
    booster
}

fn predict_rows(booster: &GBDT, rows: &[[f64; 21]]) -> Vec<f64> {
    let data: DataVec = rows
        .iter()
        .map(|row| Data::new_test_data(row.iter().map(|&x| x as f32).collect(), None))
        .collect();
    booster
        .predict(&data)
        .into_iter()
        .map(|y| (y as f64).exp())
        .collect()
}

/// Held-out quality by `folds`-fold cross-validation over shapes.
fn cross_validate(samples: &[Sample], folds: usize) -> Quality {
    let shapes: Vec<_> = samples
        .iter()
        .map(|s| s.shape)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let folds = folds.clamp(2, shapes.len().max(2));
    let (mut settled, mut raw) = (Vec::new(), Vec::new());
    for fold in 0..folds {
        let held: BTreeSet<_> = shapes
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds == fold)
            .map(|(_, s)| *s)
            .collect();
        let train: Vec<&Sample> = samples
            .iter()
            .filter(|s| !held.contains(&s.shape))
            .collect();
        if train.is_empty() || held.is_empty() {
            continue;
        }
        let booster = fit(&train);
        for shape in &held {
            let test: Vec<&Sample> = samples.iter().filter(|s| s.shape == *shape).collect();
            let predicted = predict_rows(
                &booster,
                &test.iter().map(|s| s.features).collect::<Vec<_>>(),
            );
            let chosen = argmax(&predicted);
            settled.push(judge(&test, chosen, |s| s.e2e_gflops));
            raw.push(judge(&test, chosen, |s| s.measured_e2e_gflops));
        }
    }
    let judged = Regret::of(&settled);
    Quality {
        folds,
        shapes: settled.len(),
        top1: judged.top1,
        mean_regret: judged.mean_regret,
        max_regret: judged.max_regret,
        raw: Some(Regret::of(&raw)),
    }
}

/// Whether `chosen` is the best of `test` by `value`, and its regret.
fn judge(test: &[&Sample], chosen: usize, value: impl Fn(&Sample) -> f64) -> (bool, f64) {
    let values: Vec<f64> = test.iter().map(|s| value(s)).collect();
    let best = argmax(&values);
    let hit =
        (test[chosen].device, &test[chosen].kernel) == (test[best].device, &test[best].kernel);
    (hit, values[best] / values[chosen] - 1.0)
}

/// Index of the largest value of a non-empty slice.
fn argmax(values: &[f64]) -> usize {
    (0..values.len())
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .expect("non-empty")
}

impl Model {
    /// Trains on every row of `databases` (one per device of the host) and measures held-out quality
    /// with `folds`-fold cross-validation over shapes.
    pub fn train(databases: &[TuningDb], folds: usize) -> Result<Self> {
        let samples = samples(databases);
        if samples.is_empty() {
            return Err(Error::NotFound(
                "no measurements to train on: run `tilegemm tune` first".into(),
            ));
        }
        let shapes = samples
            .iter()
            .map(|s| s.shape)
            .collect::<BTreeSet<_>>()
            .len();
        let quality = if shapes >= 2 {
            Some(cross_validate(&samples, folds))
        } else {
            None
        };
        let booster = fit(&samples.iter().collect::<Vec<_>>());
        Ok(Model {
            format: FORMAT.into(),
            version: VERSION,
            devices: databases.iter().map(|db| db.device_key.clone()).collect(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            rows: samples.len(),
            quality,
            booster,
        })
    }

    /// Predicted end-to-end GFLOPS of `kernel` on the device `device_key` (None: unknown device).
    pub fn predict(
        &self,
        m: usize,
        n: usize,
        k: usize,
        backend: BackendKind,
        device_key: &str,
        kernel: &str,
    ) -> Option<f64> {
        let device = self.devices.iter().position(|d| d == device_key)?;
        let row = features(m, n, k, backend, device, kernel);
        predict_rows(&self.booster, &[row]).first().copied()
    }

    /// The file of the model of a host with these device keys (order-independent).
    pub fn file_name(device_keys: &[String]) -> String {
        let mut keys: Vec<&String> = device_keys.iter().collect();
        keys.sort();
        // FNV-1a: a stable name from the set of keys.
        let mut hash: u64 = 0xcbf29ce484222325;
        for byte in keys.iter().flat_map(|k| k.bytes().chain([0])) {
            hash = (hash ^ byte as u64).wrapping_mul(0x100000001b3);
        }
        format!("host-{hash:016x}.model.json")
    }

    /// Writes the model atomically into `dir`, named after its devices' keys; returns the path.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let path = dir.join(Self::file_name(&self.devices));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::file(dir, "creating the folder", Some(Box::new(e))))?;
        let text = serde_json::to_string(self)
            .map_err(|e| Error::file(&path, "serialising", Some(Box::new(e))))?;
        write_atomically(&path, &text)?;
        Ok(path)
    }

    /// The model for exactly this set of devices in `dir`, if any; an error when the file is not a
    /// usable model (the caller reports it and goes on without).
    pub fn load(dir: &Path, device_keys: &[String]) -> Result<Option<Self>> {
        Self::load_from(&DataSource::Folder(dir.to_path_buf()), device_keys)
    }

    /// As [`Model::load`], from any data source.
    pub fn load_from(source: &DataSource, device_keys: &[String]) -> Result<Option<Self>> {
        let name = Self::file_name(device_keys);
        let Some(text) = source.read(&name)? else {
            return Ok(None);
        };
        let path = source.path(&name);
        let model: Model = serde_json::from_str(&text).map_err(|e| {
            Error::file(
                &path,
                format!("not a selector model: {e}"),
                Some(Box::new(e)),
            )
        })?;
        if model.format != FORMAT || model.version != VERSION || model.features != FEATURES {
            return Err(Error::file(
                &path,
                format!(
                    "format {} version {} with other features",
                    model.format, model.version
                ),
                None,
            ));
        }
        Ok(Some(model))
    }
}
