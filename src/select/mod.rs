//! The selector: which (backend, kernel) should run a shape on this host.
//!
//! It takes the devices (`&[Arc<dyn Backend>]`), never the engine: `candidates` holds what a GEMM
//! may run on (the caller's [`Target`], the [`Choice`]s that pass the devices' capability checks),
//! `prior` the order for devices nobody measured, `calibration` the short per-device measurement
//! behind the calibrated prior, `db` the tuning store, `model` the learned model, `decisions` the
//! bucketed cache of rankings, `online` on-line tuning from real calls, `recorder` the background
//! thread that keeps their measurements and retrains the model, `policy` how a ranking becomes the
//! order candidates are tried in, and `guard` the validation probe and the set of kernels disabled
//! after a failure; `shipped` is the data built into the binary.
//!
//! Every candidate gets an end-to-end estimate from the best source for it: measured on this
//! device at this shape (the tuning database) → the learned model (gradient-boosted trees over
//! shape, tiling and the device's calibration, so it also ranks devices it was not trained on) →
//! the calibrated prior. Measurements are compared by end-to-end GFLOPS, what a caller of
//! `Engine::gemm` experiences, with the copy time settled across each device's kernels
//! ([`db::TuningDb::e2e_estimate`]). The ranking is the fallback order too: [`policy::Policy`]
//! decides how the engine walks it.

pub mod calibration;
pub mod candidates;
pub mod db;
pub mod decisions;
pub mod guard;
pub mod model;
pub mod online;
pub mod policy;
pub mod prior;
pub mod recorder;
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
use std::sync::{Arc, Mutex, RwLock};

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

impl Selection {
    /// The selection of candidates ranked best first (the sort is the caller's), answering for
    /// `key`. `ranked` is not empty.
    fn of_ranked(mut ranked: Vec<(Choice, Candidate)>, key: DecisionKey) -> Self {
        // Stable: candidates without a number keep their order, after those with one.
        let score = |c: &Candidate| c.predicted_gflops.unwrap_or(f64::NEG_INFINITY);
        ranked.sort_by(|(_, a), (_, b)| score(b).total_cmp(&score(a)));
        let (order, candidates): (Vec<Choice>, Vec<Candidate>) = ranked.into_iter().unzip();
        Selection {
            chosen: candidates[0].clone(),
            source: candidates[0].source,
            runner_up: candidates.get(1).cloned(),
            candidates,
            order,
            key,
        }
    }
}

/// One device's calibration, made once.
type CalibrationCell = Arc<std::sync::OnceLock<Option<Arc<Calibration>>>>;

/// The devices of an engine, their tuning databases (loaded from a list of folders, later folders
/// winning) and the learned model; ranks candidates and remembers its decisions.
pub struct Selector {
    devices: Vec<Arc<dyn Backend>>,
    /// Per device key, the database of this device (or of the same device under another driver).
    databases: HashMap<String, TuningDb>,
    /// Every shape some database measured exactly: their decisions are not bucketed.
    measured_shapes: HashSet<(usize, usize, usize)>,
    /// The learned model; replaced when the recorder retrains it.
    model: RwLock<Option<Arc<Model>>>,
    /// Where the data came from: calibrations of known devices are read from here too.
    sources: Vec<DataSource>,
    calibration: CalibrationMode,
    /// Per device key, its calibration (None: it could not be calibrated), made on first need: the
    /// map is locked only to find a device's cell, so calibrating one device holds up only calls
    /// that need the same device's.
    calibrations: Mutex<HashMap<String, CalibrationCell>>,
    decisions: Mutex<Decisions>,
    /// Files that were found but could not be used, with why (reported once, at load).
    pub problems: Vec<String>,
}

impl Selector {
    /// As [`Selector::from_sources`] over the folders `dirs`, calibrating devices on first need
    /// and keeping the calibrations in the user cache.
    pub fn load(backends: &[Arc<dyn Backend>], dirs: &[PathBuf]) -> Self {
        let calibration = db::user_dir().map_or(CalibrationMode::InMemory, CalibrationMode::Cached);
        Self::with_calibration(backends, dirs, calibration)
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
    /// replace earlier ones): the device's own, else (a GPU) one of the same device under another
    /// driver. Unusable files are logged once and listed in `problems`, never
    /// fatal. Unmeasured candidates are estimated by the calibrated prior under `calibration`.
    pub fn from_sources(
        backends: &[Arc<dyn Backend>],
        sources: &[DataSource],
        calibration: CalibrationMode,
    ) -> Self {
        let mut problems = Vec::new();
        let databases = load_databases(backends, sources, &mut problems);
        let measured_shapes = databases
            .values()
            .flat_map(|db| db.rows.iter().map(|r| (r.m, r.n, r.k)))
            .collect();
        // The host's own model (trained on exactly the devices that have measurements, as `tune`
        // trains it), else the largest one found: it transfers through the calibrations.
        let keys: Vec<String> = backends
            .iter()
            .filter_map(|b| databases.get(&b.info().key))
            .map(|db| db.device_key.clone())
            .collect();
        let model = Model::for_host(sources, &keys, &mut problems);
        Selector {
            devices: backends.to_vec(),
            databases,
            measured_shapes,
            model: RwLock::new(model.map(Arc::new)),
            sources: sources.to_vec(),
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
        DecisionKey::new(problem, target, self.is_measured(problem))
    }

    /// Whether `problem` is a single GEMM of a shape some database measured exactly.
    fn is_measured(&self, problem: &GemmProblem) -> bool {
        problem.batch == 1
            && self
                .measured_shapes
                .contains(&(problem.m, problem.n, problem.k))
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

    /// The calibration of `backend`: this host's own, from the cache folder, else made on first
    /// need and kept there; None when calibration is off or the device offers no kernel. Shipped
    /// calibrations describe the machines the shipped data was measured on, not this one (two
    /// hosts' CPUs of one name differ 2× on the GPU machines), so they are only used for training.
    pub fn calibration(&self, backend: &dyn Backend) -> Option<Arc<Calibration>> {
        if self.calibration == CalibrationMode::Off {
            return None;
        }
        let key = &backend.info().key;
        let cell = self
            .calibrations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.clone())
            .or_default()
            .clone();
        cell.get_or_init(|| {
            let folder = match &self.calibration {
                CalibrationMode::Cached(dir) => Some(DataSource::Folder(dir.clone())),
                _ => None,
            };
            let stored =
                folder
                    .as_ref()
                    .and_then(|source| match Calibration::load_from(source, key) {
                        Ok(found) => found.filter(Calibration::is_current),
                        Err(e) => {
                            log::warn!("ignoring {e}");
                            None
                        }
                    });
            let calibration = stored.or_else(|| {
                let made = calibrate(backend)?;
                log::info!("calibrated {key} in {:.0} ms", made.seconds * 1e3);
                if let Some(DataSource::Folder(dir)) = &folder {
                    if let Err(e) = made.save(dir) {
                        log::warn!("calibration not kept: {e}");
                    }
                }
                Some(made)
            });
            calibration.map(Arc::new)
        })
        .clone()
    }

    /// The devices this selector ranks.
    pub fn devices(&self) -> &[Arc<dyn Backend>] {
        &self.devices
    }

    /// The learned model in use: this host's own, or one that reaches its devices through their
    /// calibrations; None without one.
    pub fn model(&self) -> Option<Arc<Model>> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Trains a new model on every tuning database of the selector's sources and `dir` (where
    /// on-line rows are kept) whose device has a calibration — this host's devices and every other
    /// the data holds: the model describes devices by their calibrations, so the others' rows
    /// teach it tilings and shapes — saves it into `dir` and puts it in use for decisions not yet
    /// made. Slow (seconds): [`recorder`] calls it off the call path. Returns the rows it learned.
    pub fn retrain(&self, dir: &std::path::Path) -> Result<usize> {
        let mut sources = self.sources.clone();
        let recorded = DataSource::Folder(dir.to_path_buf());
        if !sources.contains(&recorded) {
            sources.push(recorded);
        }
        let mut databases: std::collections::BTreeMap<String, TuningDb> = Default::default();
        for source in &sources {
            for name in source.names() {
                if !name.ends_with(".tuning.json") {
                    continue;
                }
                let Ok(Some(text)) = source.read(&name) else {
                    continue;
                };
                let Ok(mut db) = TuningDb::parse(&source.path(&name), &text) else {
                    continue;
                };
                db.drop_changed_kernels();
                match databases.get_mut(&db.device_key) {
                    Some(earlier) => db.rows.into_iter().for_each(|row| earlier.record_row(row)),
                    None => {
                        databases.insert(db.device_key.clone(), db);
                    }
                }
            }
        }
        let mut calibrations: Vec<Calibration> = self
            .devices
            .iter()
            .filter_map(|device| self.calibration(device.as_ref()))
            .map(|c| c.as_ref().clone())
            .collect();
        for key in databases.keys() {
            if calibrations.iter().any(|c| &c.device_key == key) {
                continue;
            }
            calibrations.extend(
                sources
                    .iter()
                    .rev()
                    .find_map(|source| Calibration::load_from(source, key).ok().flatten()),
            );
        }
        let databases: Vec<TuningDb> = databases.into_values().collect();
        let model = Model::train(&databases, &calibrations, 0)?;
        model.save(dir)?;
        let rows = model.rows;
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(model));
        Ok(rows)
    }

    /// The data shipped inside the binary, then the user cache.
    pub fn default_sources() -> Vec<DataSource> {
        std::iter::once(DataSource::Shipped)
            .chain(db::user_dir().map(DataSource::Folder))
            .collect()
    }

    /// The candidate `choice` with its estimate from the best source for it: measured at this
    /// shape on this device → the learned model → the calibrated prior → nothing.
    fn estimate(&self, choice: &Choice, problem: &GemmProblem) -> Candidate {
        let info = choice.backend.info();
        let shape = Shape::new(problem.m, problem.n, problem.k);
        let database = self.databases.get(&info.key);
        let measured = database.and_then(|db| db.e2e_estimate(shape, &choice.kernel));
        let calibration = || self.calibration(choice.backend.as_ref());
        let modelled = || {
            self.model()?.predict(
                problem.m,
                problem.n,
                problem.k,
                info.backend,
                calibration()?.as_ref(),
                &choice.kernel,
            )
        };
        let calibrated = || calibration()?.estimate_gflops(&choice.kernel, problem);
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

    /// The ranking of `device`'s kernels for `problem` on matrices it holds: by kernel time, since
    /// nothing is copied — the kernel GFLOPS measured at this shape on this device, else its
    /// calibrated kernel rate, else the prior's order. Cached per shape bucket like
    /// [`Selector::select_cached`].
    pub fn select_resident(
        &self,
        device: &Arc<dyn Backend>,
        problem: &GemmProblem,
    ) -> Result<Arc<Selection>> {
        let info = device.info();
        let key = DecisionKey::resident(problem, &info.key, self.is_measured(problem));
        if let Some(found) = self.lock_decisions().get(&key) {
            return Ok(found);
        }
        let devices = [device.clone()];
        let target = Target::default();
        let prior = prior_order(&devices, &target, problem);
        if prior.is_empty() {
            return Err(why_no_candidate(&devices, &target, problem));
        }
        let problem = &ranked_as(problem);
        let shape = Shape::new(problem.m, problem.n, problem.k);
        let database = self.databases.get(&info.key);
        let calibration = self.calibration(device.as_ref());
        let flops = problem.flops().max(1.0);
        let ranked: Vec<(Choice, Candidate)> = prior
            .into_iter()
            .map(|choice| {
                let measured = database
                    .and_then(|db| db.lookup(shape, &choice.kernel))
                    .map(|row| row.gflops);
                let calibrated = || {
                    let c = calibration.as_ref()?;
                    let seconds =
                        c.fixed_seconds + flops / (c.kernel_gflops(&choice.kernel)? * 1e9);
                    Some(flops / seconds / 1e9)
                };
                let (predicted_gflops, source) = match measured {
                    Some(gflops) => (Some(gflops), Source::Database),
                    None => (calibrated(), Source::Prior),
                };
                let candidate = Candidate {
                    backend: info.backend.to_string(),
                    api: info.api.clone(),
                    device: info.name.clone(),
                    kernel: choice.kernel.clone(),
                    predicted_gflops,
                    source,
                };
                (choice, candidate)
            })
            .collect();
        let selection = Arc::new(Selection::of_ranked(ranked, key.clone()));
        self.lock_decisions().insert(key, selection.clone());
        Ok(selection)
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
        let key = self.key(target, problem);
        let problem = &ranked_as(problem);
        let mut ranked: Vec<(Choice, Candidate)> = prior
            .into_iter()
            .map(|choice| {
                let candidate = self.estimate(&choice, problem);
                (choice, candidate)
            })
            .collect();
        self.correct_by_measurements(&mut ranked, problem);
        Ok(Selection::of_ranked(ranked, key))
    }
}

/// The single GEMM whose estimates stand for `problem`'s: a batch of B products of m×n×k is ranked
/// as one (B·m)×n×k GEMM — the same workgroups and floating-point operations, each product's B
/// read once more (estimates of a batch are approximate until on-line tuning has timed it).
pub(crate) fn ranked_as(problem: &GemmProblem) -> GemmProblem {
    if problem.batch == 1 {
        return *problem;
    }
    GemmProblem::new(problem.m * problem.batch, problem.n, problem.k)
        .with_transpose(problem.trans_a, problem.trans_b)
        .with_scalars(problem.alpha, problem.beta)
}

/// For every device of `backends`, its database merged over `sources` (later ones add their rows
/// to earlier ones): the device's own, else (a GPU) one of the same device under another driver. Unusable files are logged and listed in `problems`.
fn load_databases(
    backends: &[Arc<dyn Backend>],
    sources: &[DataSource],
    problems: &mut Vec<String>,
) -> HashMap<String, TuningDb> {
    let mut databases = HashMap::new();
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
    databases
}
