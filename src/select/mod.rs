//! The selector: which (backend, kernel) should run a shape on this host.
//!
//! It takes the devices (`&[Arc<dyn Backend>]`), never the engine: `candidates` holds what a GEMM
//! may run on (the caller's [`Target`], the [`Choice`]s that pass the devices' capability checks),
//! `prior` the order for devices nobody measured, `db` the tuning store, `model` the learned model,
//! `policy` how a ranking becomes the order candidates are tried in, and `guard` the validation
//! probe and the set of kernels disabled after a failure.
//!
//! Decisions come, in order, from the tuning database (shapes measured on this host's devices), from
//! the learned model (gradient-boosted trees trained on those measurements, for unmeasured shapes)
//! and from the prior. Candidates are only the pairs that pass the devices' capability checks.
//! Measurements are compared by end-to-end GFLOPS, what a caller of `Engine::gemm` experiences, with
//! the copy time settled across each device's kernels ([`db::TuningDb::e2e_estimate`]). The ranking
//! is the fallback order too: [`policy::Policy`] decides how the engine walks it.

pub mod calibration;
pub mod candidates;
pub mod db;
pub mod decisions;
pub mod guard;
pub mod model;
pub mod online;
pub mod policy;
pub mod prior;
pub mod shipped;

pub use candidates::{candidates, why_no_candidate, Choice, Target};
pub use prior::prior_order;

use crate::backend::Backend;
use crate::error::Result;
use crate::problem::{GemmProblem, Shape};
use calibration::{calibrate, Calibration, CalibrationMode};
use db::{DataSource, TuningDb};
use decisions::{DecisionKey, Decisions};
use model::Model;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// This shape was measured on this device.
    Database,
    /// Predicted by the learned model from measurements of other shapes.
    Model,
    /// Nothing measured: the calibrated prior's estimate (or, uncalibrated, the prior's order).
    Prior,
}

/// One candidate and what is known of it.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    /// The backend of the device (`cpu`, `wgpu`, `ocl`).
    pub backend: String,
    /// The API underneath the backend (`vulkan`, `metal`, `dx12`, `opencl`, `native`).
    pub api: String,
    /// The device's name, as its API reports it.
    pub device: String,
    /// The kernel's catalogue name.
    pub kernel: String,
    /// End-to-end GFLOPS at this shape: measured, predicted by the model or estimated by the
    /// calibrated prior; None where nothing is known (ranked after every candidate with a number).
    pub predicted_gflops: Option<f64>,
    /// Where `predicted_gflops` came from.
    pub source: Source,
}

/// The selector's answer for one shape.
#[derive(Clone, Debug, Serialize)]
pub struct Selection {
    /// The candidate ranked first: the one that runs.
    #[serde(flatten)]
    pub chosen: Candidate,
    /// Where the chosen candidate's estimate came from.
    pub source: Source,
    /// The candidate ranked second; None when there is only one.
    pub runner_up: Option<Candidate>,
    /// Every candidate as ranked, with its estimate and where that came from.
    pub candidates: Vec<Candidate>,
    /// Every candidate in the order ranked: the choice first, then the fallbacks.
    #[serde(skip)]
    pub order: Vec<Choice>,
    /// The decision bucket this selection answers for.
    #[serde(skip)]
    pub key: DecisionKey,
}

/// The devices of an engine, their tuning databases (loaded from a list of folders, later folders
/// winning) and the learned model; ranks candidates and remembers its decisions.
pub struct Selector {
    devices: Vec<Arc<dyn Backend>>,
    /// Per device key, the database of this device (or of the same device under another driver).
    databases: HashMap<String, TuningDb>,
    /// Every shape some database measured exactly: their decisions are not bucketed.
    measured_shapes: HashSet<(usize, usize, usize)>,
    model: Option<Model>,
    calibration: CalibrationMode,
    /// Per device key, its calibration (None: it could not be calibrated), made on first need.
    calibrations: Mutex<HashMap<String, Option<Arc<Calibration>>>>,
    decisions: Mutex<Decisions>,
    /// Files that were found but could not be used, with why (reported once, at load).
    pub problems: Vec<String>,
}

impl Selector {
    /// As [`Selector::from_sources`] over the folders `dirs`, calibrating devices on first need
    /// and keeping the calibrations in the user cache.
    pub fn load(backends: &[Arc<dyn Backend>], dirs: &[PathBuf]) -> Self {
        Self::with_calibration(backends, dirs, CalibrationMode::Cached(db::user_dir()))
    }

    /// As [`Selector::from_sources`] over the folders `dirs`.
    pub fn with_calibration(
        backends: &[Arc<dyn Backend>],
        dirs: &[PathBuf],
        calibration: CalibrationMode,
    ) -> Self {
        let sources: Vec<DataSource> = dirs.iter().cloned().map(DataSource::Folder).collect();
        Self::from_sources(backends, &sources, calibration)
    }

    /// Loads, for every device of `backends`, its database from each of `sources` (later ones
    /// replace earlier ones): the device's own, else one of the same device under another driver
    /// (or CPU thread count). Unusable files are logged once and listed in `problems`, never
    /// fatal. Unmeasured candidates are estimated by the calibrated prior under `calibration`.
    pub fn from_sources(
        backends: &[Arc<dyn Backend>],
        sources: &[DataSource],
        calibration: CalibrationMode,
    ) -> Self {
        let mut databases = HashMap::new();
        let mut problems = Vec::new();
        for backend in backends {
            let info = backend.info();
            for source in sources {
                match TuningDb::load_for(source, info) {
                    Ok(Some(mut db)) => {
                        let dropped = db.drop_changed_kernels();
                        if dropped > 0 {
                            problems.push(format!(
                                "{}: {dropped} rows of kernels changed since measured, dropped",
                                db.device
                            ));
                        }
                        // Later sources add to earlier ones (row by row), never hide them: a
                        // cache file of a few on-line rows keeps the shipped thousands.
                        match databases.entry(info.key.clone()) {
                            std::collections::hash_map::Entry::Occupied(mut earlier) => {
                                let earlier: &mut TuningDb = earlier.get_mut();
                                for row in db.rows {
                                    earlier.record_row(row);
                                }
                            }
                            std::collections::hash_map::Entry::Vacant(slot) => {
                                slot.insert(db);
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!("ignoring {e}");
                        problems.push(e.to_string());
                    }
                }
            }
        }
        let measured_shapes = databases
            .values()
            .flat_map(|db| db.rows.iter().map(|r| (r.m, r.n, r.k)))
            .collect();
        // The model of exactly the devices that have measurements, as `tune` trains it.
        let keys: Vec<String> = backends
            .iter()
            .filter_map(|b| databases.get(&b.info().key))
            .map(|db| db.device_key.clone())
            .collect();
        let mut model = None;
        for source in sources {
            match Model::load_from(source, &keys) {
                Ok(Some(found)) => model = Some(found),
                Ok(None) => {}
                Err(e) => {
                    log::warn!("ignoring {e}");
                    problems.push(e.to_string());
                }
            }
        }
        Selector {
            devices: backends.to_vec(),
            databases,
            measured_shapes,
            model,
            calibration,
            calibrations: Mutex::new(HashMap::new()),
            decisions: Mutex::new(Decisions::new(decisions::DEFAULT_CAPACITY)),
            problems,
        }
    }

    /// As [`Selector::select`], remembering the decision per shape bucket ([`decisions`]): later
    /// calls in the same bucket, with the same transposes, alignment and target, return it without
    /// ranking again.
    pub fn select_cached(&self, target: &Target, problem: &GemmProblem) -> Result<Arc<Selection>> {
        let key = self.key(target, problem);
        if let Some(found) = self.lock_decisions().get(&key) {
            return Ok(found);
        }
        let selection = Arc::new(self.select(target, problem)?);
        self.lock_decisions().insert(key, selection.clone());
        Ok(selection)
    }

    /// The decision bucket of `problem` under `target`.
    fn key(&self, target: &Target, problem: &GemmProblem) -> DecisionKey {
        let exact = self
            .measured_shapes
            .contains(&(problem.m, problem.n, problem.k));
        DecisionKey::new(problem, target, exact)
    }

    /// Makes candidate `winner` of `selection` (an index into its order) the bucket's decision,
    /// measured at `gflops` end to end by real calls; returns the new decision.
    pub fn promote(&self, selection: &Selection, winner: usize, gflops: f64) -> Arc<Selection> {
        let mut order = selection.order.clone();
        let mut candidates = selection.candidates.clone();
        let choice = order.remove(winner);
        let mut candidate = candidates.remove(winner);
        order.insert(0, choice);
        candidate.predicted_gflops = Some(gflops);
        candidate.source = Source::Database;
        candidates.insert(0, candidate);
        let promoted = Arc::new(Selection {
            chosen: candidates[0].clone(),
            source: Source::Database,
            runner_up: candidates.get(1).cloned(),
            candidates,
            order,
            key: selection.key.clone(),
        });
        self.lock_decisions()
            .insert(selection.key.clone(), promoted.clone());
        promoted
    }

    fn lock_decisions(&self) -> std::sync::MutexGuard<'_, Decisions> {
        self.decisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many decisions are remembered.
    pub fn cached_decisions(&self) -> usize {
        self.lock_decisions().len()
    }

    /// The calibration of `backend`, made on first need (or read from the cache folder); None
    /// when calibration is off or the device offers none of the prior's kernels.
    pub fn calibration(&self, backend: &dyn Backend) -> Option<Arc<Calibration>> {
        let folder = match &self.calibration {
            CalibrationMode::Off => return None,
            CalibrationMode::InMemory => None,
            CalibrationMode::Cached(dir) => Some(dir),
        };
        let key = &backend.info().key;
        let mut calibrations = self.calibrations.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = calibrations.get(key) {
            return known.clone();
        }
        let cached = folder.and_then(|dir| match Calibration::load(dir, key) {
            Ok(found) => found,
            Err(e) => {
                log::warn!("ignoring {e}");
                None
            }
        });
        let calibration = cached.or_else(|| {
            let made = calibrate(backend)?;
            log::info!("calibrated {key} in {:.0} ms", made.seconds * 1e3);
            if let Some(dir) = folder {
                if let Err(e) = made.save(dir) {
                    log::warn!("calibration not kept: {e}");
                }
            }
            Some(made)
        });
        let calibration = calibration.map(Arc::new);
        calibrations.insert(key.clone(), calibration.clone());
        calibration
    }

    /// The devices this selector ranks.
    pub fn devices(&self) -> &[Arc<dyn Backend>] {
        &self.devices
    }

    /// The learned model in use, if one was found for this host's devices.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// The data shipped inside the binary, then the user cache.
    pub fn default_sources() -> Vec<DataSource> {
        vec![DataSource::Shipped, DataSource::Folder(db::user_dir())]
    }

    /// The candidate `choice` with its estimate from the best source for it: measured at this
    /// shape on this device → the learned model → the calibrated prior → nothing.
    fn estimate(&self, choice: &Choice, problem: &GemmProblem) -> Candidate {
        let info = choice.backend.info();
        let shape = Shape::new(problem.m, problem.n, problem.k);
        let database = self.databases.get(&info.key);
        let measured = database.and_then(|db| db.e2e_estimate(shape, &choice.kernel));
        let modelled = || {
            let (model, db) = (self.model.as_ref()?, database?);
            model.predict(
                problem.m,
                problem.n,
                problem.k,
                info.backend,
                &db.device_key,
                &choice.kernel,
            )
        };
        let calibrated = || {
            self.calibration(choice.backend.as_ref())?
                .estimate_gflops(&choice.kernel, problem)
        };
        let (predicted_gflops, source) = match measured {
            Some(gflops) => (Some(gflops), Source::Database),
            None => match modelled() {
                Some(gflops) => (Some(gflops), Source::Model),
                None => (calibrated(), Source::Prior),
            },
        };
        Candidate {
            backend: info.backend.to_string(),
            api: info.api.clone(),
            device: info.name.clone(),
            kernel: choice.kernel.clone(),
            predicted_gflops,
            source,
        }
    }

    /// Scales the calibrated estimates of a device by how far its calibration is from what was
    /// measured on it at this shape (the mean ratio over its measured kernels): once some kernels
    /// of a device are measured, its unmeasured ones are judged against the same reality.
    fn correct_by_measurements(&self, ranked: &mut [(Choice, Candidate)], problem: &GemmProblem) {
        for device in &self.devices {
            let key = &device.info().key;
            let on_device = |choice: &Choice| &choice.backend.info().key == key;
            let has = |source| {
                ranked.iter().any(|(ch, c)| {
                    on_device(ch) && c.source == source && c.predicted_gflops.is_some()
                })
            };
            if !has(Source::Database) || !has(Source::Prior) {
                continue;
            }
            let Some(calibration) = self.calibration(device.as_ref()) else {
                continue;
            };
            let ratios: Vec<f64> = ranked
                .iter()
                .filter(|(ch, c)| on_device(ch) && c.source == Source::Database)
                .filter_map(|(ch, c)| {
                    Some(c.predicted_gflops? / calibration.estimate_gflops(&ch.kernel, problem)?)
                })
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let ratio = ratios.iter().sum::<f64>() / ratios.len() as f64;
            for (choice, candidate) in ranked.iter_mut() {
                if on_device(choice) && candidate.source == Source::Prior {
                    candidate.predicted_gflops = candidate.predicted_gflops.map(|g| g * ratio);
                }
            }
        }
    }

    /// Ranks every candidate for `problem` by its estimated end-to-end GFLOPS, each estimate from
    /// the best source for that candidate (measured → model → calibrated prior): a measured
    /// candidate never wins only because its rivals are unmeasured. Candidates with no estimate
    /// follow in the prior's order. The first is the choice, the rest are the fallbacks.
    pub fn select(&self, target: &Target, problem: &GemmProblem) -> Result<Selection> {
        let prior = prior_order(&self.devices, target, problem);
        if prior.is_empty() {
            return Err(why_no_candidate(&self.devices, target, problem));
        }
        let mut ranked: Vec<(Choice, Candidate)> = prior
            .into_iter()
            .map(|choice| {
                let candidate = self.estimate(&choice, problem);
                (choice, candidate)
            })
            .collect();
        self.correct_by_measurements(&mut ranked, problem);
        // Stable: candidates without a number keep the prior's order, after those with one.
        let score = |c: &Candidate| c.predicted_gflops.unwrap_or(f64::NEG_INFINITY);
        ranked.sort_by(|(_, a), (_, b)| score(b).total_cmp(&score(a)));
        let (order, candidates): (Vec<Choice>, Vec<Candidate>) = ranked.into_iter().unzip();
        Ok(Selection {
            chosen: candidates[0].clone(),
            source: candidates[0].source,
            runner_up: candidates.get(1).cloned(),
            candidates,
            order,
            key: self.key(target, problem),
        })
    }
}
