//! The learned model: gradient-boosted regression trees (the `gbdt` crate: pure Rust, trains and
//! serialises with serde; `perpetual` needs a nightly compiler) predicting a candidate's end-to-end
//! GFLOPS at shapes nobody measured, on devices it was trained on and on devices it never saw.
//!
//! **How it transfers.** A device enters the model only through its calibration
//! ([`super::calibration`]): its calibrated kernel rate, copy rates and fixed cost, and the calibrated
//! prior's estimate for the candidate. The trees learn the *correction* to that estimate,
//! ln(measured ÷ calibrated estimate), from shape and tiling features: what the prior gets wrong
//! about a tiling at a shape (occupancy, tails, staging) is much the same on a similar device, and
//! the device's own speed comes from its calibration, not from an index the trees memorised. A model
//! trained on one host therefore ranks candidates on a host it never saw (rows from the H200 host
//! rank an H100's).
//!
//! Trained on the tuning databases of the devices that have a calibration, stored as JSON with the
//! devices it was trained on, its feature names and its held-out quality. Quality is measured by
//! k-fold over shapes: every shape is predicted by a model that never saw it.

use super::calibration::Calibration;
use super::db::{write_atomically, DataSource, TuningDb};
use crate::device::BackendKind;
use crate::error::{Error, Result};
use crate::kernel::{find, KernelSpec};
use crate::problem::{GemmProblem, Shape};
use gbdt::config::Config;
use gbdt::decision_tree::{Data, DataVec};
use gbdt::gradient_boost::GBDT;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const FORMAT: &str = "tilegemm-selector-model";
const VERSION: u32 = 4;

/// How many features a candidate has.
const FEATURE_COUNT: usize = 22;

/// The seed's features (sizes and work in log2, the tiling's parameters), the backend, and the
/// device as its calibration describes it.
pub const FEATURES: [&str; FEATURE_COUNT] = [
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
    "log2_device_gflops",
    "log2_calibrated_gflops",
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
    /// Keys of the devices whose measurements it was trained on (it predicts for any calibrated
    /// device).
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
    features: [f64; FEATURE_COUNT],
    /// The calibrated prior's end-to-end GFLOPS: what the model corrects.
    calibrated_gflops: f64,
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

/// The feature vector of `kernel` on the device `calibration` describes, with the calibrated
/// prior's end-to-end GFLOPS for it (the value the model corrects); None when the calibration gives
/// no estimate.
pub fn features(
    m: usize,
    n: usize,
    k: usize,
    backend: BackendKind,
    calibration: &Calibration,
    kernel: &str,
) -> Option<([f64; FEATURE_COUNT], f64)> {
    let log2 = |x: f64| x.max(1.0).log2();
    let calibrated = calibration.estimate_gflops(kernel, &GemmProblem::new(m, n, k))?;
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
    let features = [
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
        log2(calibration.peak_gflops()),
        log2(calibrated),
    ];
    Some((features, calibrated))
}

/// Every usable row of `databases` as a sample; a database whose device has no calibration in
/// `calibrations` cannot be described to the model and is left out (its key is returned).
fn samples(databases: &[TuningDb], calibrations: &[Calibration]) -> (Vec<Sample>, Vec<String>) {
    let (mut out, mut uncalibrated) = (Vec::new(), Vec::new());
    for (device, db) in databases.iter().enumerate() {
        let Some(calibration) = calibrations.iter().find(|c| c.device_key == db.device_key) else {
            uncalibrated.push(db.device_key.clone());
            continue;
        };
        for row in db
            .rows
            .iter()
            .filter(|r| r.e2e_gflops > 0.0 && r.gflops > 0.0)
        {
            let shape = Shape::new(row.m, row.n, row.k);
            let Some((features, calibrated_gflops)) =
                features(row.m, row.n, row.k, db.backend, calibration, &row.kernel)
            else {
                continue;
            };
            out.push(Sample {
                shape: (row.m, row.n, row.k),
                device,
                kernel: row.kernel.clone(),
                features,
                calibrated_gflops,
                e2e_gflops: db
                    .e2e_estimate(shape, &row.kernel)
                    .unwrap_or(row.e2e_gflops),
                measured_e2e_gflops: row.e2e_gflops,
            });
        }
    }
    (out, uncalibrated)
}

/// Trains on `samples`, predicting ln(e2e GFLOPS ÷ calibrated GFLOPS). Deterministic: no row or
/// feature sampling.
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
            Data::new_training_data(
                features,
                1.0,
                (s.e2e_gflops / s.calibrated_gflops).ln() as f32,
                None,
            )
        })
        .collect();
    let mut booster = GBDT::new(&config);
    booster.fit(&mut data);
    booster
}

/// Predicted end-to-end GFLOPS of each (features, calibrated GFLOPS).
fn predict_rows(booster: &GBDT, rows: &[([f64; FEATURE_COUNT], f64)]) -> Vec<f64> {
    let data: DataVec = rows
        .iter()
        .map(|(row, _)| Data::new_test_data(row.iter().map(|&x| x as f32).collect(), None))
        .collect();
    booster
        .predict(&data)
        .into_iter()
        .zip(rows)
        .map(|(correction, (_, calibrated))| calibrated * (correction as f64).exp())
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
                &test
                    .iter()
                    .map(|s| (s.features, s.calibrated_gflops))
                    .collect::<Vec<_>>(),
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
    /// Trains on every row of `databases` whose device has a calibration in `calibrations`, and
    /// measures held-out quality with `folds`-fold cross-validation over shapes (`folds` = 0: none,
    /// e.g. a retraining in the background).
    pub fn train(
        databases: &[TuningDb],
        calibrations: &[Calibration],
        folds: usize,
    ) -> Result<Self> {
        let (samples, uncalibrated) = samples(databases, calibrations);
        if !uncalibrated.is_empty() {
            log::warn!(
                "no calibration for {}: its measurements are left out of the model",
                uncalibrated.join(", ")
            );
        }
        if samples.is_empty() {
            return Err(Error::NotFound(if uncalibrated.is_empty() {
                "no measurements to train on: run `tilegemm tune` first".into()
            } else {
                format!(
                    "no calibrated device to train on (run `tilegemm select` on the host of {} to calibrate it)",
                    uncalibrated.join(", ")
                )
            }));
        }
        let shapes = samples
            .iter()
            .map(|s| s.shape)
            .collect::<BTreeSet<_>>()
            .len();
        let quality = if shapes >= 2 && folds > 0 {
            Some(cross_validate(&samples, folds))
        } else {
            None
        };
        let booster = fit(&samples.iter().collect::<Vec<_>>());
        Ok(Model {
            format: FORMAT.into(),
            version: VERSION,
            devices: databases
                .iter()
                .map(|db| db.device_key.clone())
                .filter(|key| !uncalibrated.contains(key))
                .collect(),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            rows: samples.len(),
            quality,
            booster,
        })
    }

    /// Predicted end-to-end GFLOPS of `kernel` on the device `calibration` describes (None: the
    /// calibration gives no estimate for it).
    pub fn predict(
        &self,
        m: usize,
        n: usize,
        k: usize,
        backend: BackendKind,
        calibration: &Calibration,
        kernel: &str,
    ) -> Option<f64> {
        let row = features(m, n, k, backend, calibration, kernel)?;
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
        Self::load_named(source, &Self::file_name(device_keys))
    }

    /// The model a host with these devices uses: its own (trained on exactly these devices) from
    /// the last of `sources` that has one, else the model trained on the most measurements in any
    /// source, which reaches this host's devices through their calibrations. Unusable files are
    /// logged and listed in `problems`.
    pub fn for_host(
        sources: &[DataSource],
        device_keys: &[String],
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        let mut report = |e: Error| {
            log::warn!("ignoring {e}");
            problems.push(e.to_string());
        };
        let own = Self::file_name(device_keys);
        for source in sources.iter().rev() {
            match Self::load_named(source, &own) {
                Ok(Some(model)) => return Some(model),
                Ok(None) => {}
                Err(e) => report(e),
            }
        }
        let mut best: Option<Model> = None;
        for source in sources {
            for name in source.names() {
                if !name.ends_with(".model.json") || name == own {
                    continue;
                }
                match Self::load_named(source, &name) {
                    Ok(Some(model)) if best.as_ref().is_none_or(|b| model.rows > b.rows) => {
                        best = Some(model)
                    }
                    Ok(_) => {}
                    Err(e) => report(e),
                }
            }
        }
        best
    }

    /// The model in the file `name` of `source`, if there is one.
    fn load_named(source: &DataSource, name: &str) -> Result<Option<Self>> {
        let Some(text) = source.read(name)? else {
            return Ok(None);
        };
        let path = source.path(name);
        let not_a_model = |e: serde_json::Error| {
            Error::file(
                &path,
                format!("not a selector model: {e}"),
                Some(Box::new(e)),
            )
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_model)?;
        if let Err(reason) = check_trees(&value) {
            return Err(Error::file(
                &path,
                format!("a damaged selector model: {reason}"),
                None,
            ));
        }
        let model: Model = serde_json::from_value(value).map_err(not_a_model)?;
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

/// Checks the trees of a model file before the learner sees them: its prediction panics when the
/// tree count differs from its iterations, on a feature index past the sample or on a missing
/// child, and never ends on a child that points back up the tree. Every split node here must name
/// a feature the model has and two children stored after it (the learner appends children after
/// their parent, so this also rules out cycles).
fn check_trees(value: &serde_json::Value) -> std::result::Result<(), String> {
    use serde_json::Value;
    let number = |v: Option<&Value>, what: &str| {
        v.and_then(Value::as_u64)
            .ok_or_else(|| format!("no {what}"))
    };
    let booster = value.get("booster").ok_or("no booster")?;
    let iterations = number(booster.pointer("/conf/iterations"), "iteration count")?;
    let features = number(booster.pointer("/conf/feature_size"), "feature count")?;
    if features != FEATURE_COUNT as u64 {
        return Err(format!("{features} features, not {FEATURE_COUNT}"));
    }
    let trees = booster
        .get("trees")
        .and_then(Value::as_array)
        .ok_or("no trees")?;
    if trees.len() as u64 != iterations {
        return Err(format!("{} trees for {iterations} iterations", trees.len()));
    }
    for (t, tree) in trees.iter().enumerate() {
        let nodes = tree
            .pointer("/tree/tree")
            .and_then(Value::as_array)
            .filter(|nodes| !nodes.is_empty())
            .ok_or_else(|| format!("tree {t} has no nodes"))?;
        for (i, node) in nodes.iter().enumerate() {
            let leaf = node.pointer("/value/is_leaf").and_then(Value::as_bool);
            match leaf {
                Some(true) => continue,
                Some(false) => {}
                None => return Err(format!("tree {t}, node {i}: not a node")),
            }
            let feature = number(node.pointer("/value/feature_index"), "feature index")?;
            if feature >= FEATURE_COUNT as u64 {
                return Err(format!("tree {t}, node {i}: feature {feature}"));
            }
            for side in ["left", "right"] {
                let child = number(node.get(side), "child")?;
                if child <= i as u64 || child >= nodes.len() as u64 {
                    return Err(format!("tree {t}, node {i}: {side} child {child}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::select::calibration::KernelRate;
    use crate::select::db::Row;

    /// A device without copies whose prior's kernels run at `gflops` (tile24) and half that
    /// (tile16).
    fn calibration(key: &str, gflops: f64) -> Calibration {
        let rate = |kernel: &str, gflops| KernelRate {
            kernel: kernel.into(),
            size: 1024,
            gflops,
        };
        Calibration {
            format: "tilegemm-calibration".into(),
            version: 1,
            device_key: key.into(),
            fixed_seconds: 1e-5,
            upload_bytes_per_second: None,
            download_bytes_per_second: None,
            kernels: vec![rate("tile24", gflops), rate("tile16", gflops / 2.0)],
            one_tile: None,
            seconds: 0.1,
        }
    }

    /// The measurements of a device whose tile16 runs at 60% of its calibrated estimate at every
    /// shape and whose tile24 at 90% below K = 256 and 20% above (what the prior cannot know).
    fn database(calibration: &Calibration) -> TuningDb {
        let mut rows = Vec::new();
        for &m in &[64, 128, 256, 512, 1024] {
            for &k in &[32, 64, 128, 512, 1024, 2048] {
                for (kernel, share) in
                    [("tile16", 0.6), ("tile24", if k < 256 { 0.9 } else { 0.2 })]
                {
                    let problem = GemmProblem::new(m, m, k);
                    let gflops = share * calibration.estimate_gflops(kernel, &problem).unwrap();
                    rows.push(Row::new(Shape::new(m, m, k), kernel, gflops, gflops));
                }
            }
        }
        TuningDb {
            format: "tilegemm-tuning-db".into(),
            version: 1,
            device_key: calibration.device_key.clone(),
            backend: BackendKind::Wgpu,
            api: "vulkan".into(),
            device: "gpu".into(),
            driver: "1".into(),
            rows,
        }
    }

    /// Trained on two devices, the model predicts a third it never saw, three times faster than
    /// either, through its calibration: the ranking of its kernels flips with K as on the others,
    /// and its numbers scale with its calibrated speed.
    #[test]
    fn the_model_transfers_to_an_unseen_device_through_its_calibration() {
        let known = [calibration("a", 1000.0), calibration("b", 2000.0)];
        let databases: Vec<TuningDb> = known.iter().map(database).collect();
        let model = Model::train(&databases, &known, 0).unwrap();
        assert_eq!(model.devices, ["a", "b"]);
        let unseen = calibration("c", 6000.0);
        let predict = |m, k, kernel| {
            model
                .predict(m, m, k, BackendKind::Wgpu, &unseen, kernel)
                .unwrap()
        };
        let truth = |m, k, kernel, share| {
            share
                * unseen
                    .estimate_gflops(kernel, &GemmProblem::new(m, m, k))
                    .unwrap()
        };
        for (m, k) in [(300, 48), (700, 96), (300, 1500), (700, 700)] {
            let tile24_share = if k < 256 { 0.9 } else { 0.2 };
            for (kernel, share) in [("tile16", 0.6), ("tile24", tile24_share)] {
                let (predicted, true_value) = (predict(m, k, kernel), truth(m, k, kernel, share));
                assert!(
                    (predicted / true_value - 1.0).abs() < 0.15,
                    "{kernel} at {m}x{m}x{k}: predicted {predicted:.0}, truly {true_value:.0}"
                );
            }
            let tile24_first = predict(m, k, "tile24") > predict(m, k, "tile16");
            let truly_first = truth(m, k, "tile24", tile24_share) > truth(m, k, "tile16", 0.6);
            assert_eq!(tile24_first, truly_first, "at {m}x{m}x{k}");
            assert_eq!(truly_first, k < 256, "the test's devices flip with K");
        }
        // A device without a calibration is left out, not guessed.
        let model = Model::train(&databases, &known[..1], 0).unwrap();
        assert_eq!(model.devices, ["a"]);
        assert!(Model::train(&databases, &[], 0).is_err());
    }

    /// A model file whose trees would panic or loop in the learner (the tree count changed, a
    /// child pointing back up, a feature past the sample) is refused with the reason; the file as
    /// saved loads.
    #[test]
    fn damaged_model_files_are_refused_not_run() {
        let known = [calibration("a", 1000.0)];
        let databases: Vec<TuningDb> = known.iter().map(database).collect();
        let model = Model::train(&databases, &known, 0).unwrap();
        let dir = std::env::temp_dir().join(format!("tilegemm-model-{}", std::process::id()));
        let path = model.save(&dir).unwrap();
        let keys = model.devices.clone();
        assert!(Model::load(&dir, &keys).unwrap().is_some());
        let saved: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let split_node = saved["booster"]["trees"][0]["tree"]["tree"]
            .as_array()
            .unwrap()
            .iter()
            .position(|n| n["value"]["is_leaf"] == false)
            .expect("a tree with a split");
        let damages: [(&str, serde_json::Value); 4] = [
            ("/booster/conf/iterations", 299.into()),
            (
                &format!("/booster/trees/0/tree/tree/{split_node}/left"),
                0.into(),
            ),
            (
                &format!("/booster/trees/0/tree/tree/{split_node}/right"),
                (split_node as u64).into(),
            ),
            (
                &format!("/booster/trees/0/tree/tree/{split_node}/value/feature_index"),
                99.into(),
            ),
        ];
        for (pointer, damage) in damages {
            let mut broken = saved.clone();
            *broken.pointer_mut(pointer).unwrap() = damage;
            std::fs::write(&path, broken.to_string()).unwrap();
            let err = Model::load(&dir, &keys)
                .err()
                .unwrap_or_else(|| panic!("{pointer} loaded"));
            assert!(err.to_string().contains("damaged"), "{pointer}: {err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
