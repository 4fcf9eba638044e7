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

pub mod candidates;
pub mod db;
pub mod guard;
pub mod model;
pub mod policy;
pub mod prior;

pub use candidates::{candidates, why_no_candidate, Choice, Target};
pub use prior::prior_order;

use crate::backend::Backend;
use crate::error::Result;
use crate::problem::Transpose;
use crate::problem::{GemmProblem, Shape};
use db::TuningDb;
use model::Model;
use serde::Serialize;
use std::collections::HashMap;
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
    /// Nothing measured: the engine's documented rules.
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
    /// End-to-end GFLOPS at this shape: measured, or predicted by the model.
    pub predicted_gflops: Option<f64>,
}

/// The selector's answer for one shape.
#[derive(Clone, Debug, Serialize)]
pub struct Selection {
    /// The candidate ranked first: the one that runs.
    #[serde(flatten)]
    pub chosen: Candidate,
    /// Where the ranking came from.
    pub source: Source,
    /// The candidate ranked second; None when there is only one.
    pub runner_up: Option<Candidate>,
    /// Every candidate in the order ranked: the choice first, then the fallbacks.
    #[serde(skip)]
    pub order: Vec<Choice>,
}

/// What a cached decision depends on: shape, transposes and the caller's target.
type DecisionKey = (usize, usize, usize, Transpose, Transpose, Target);

/// The devices of an engine, their tuning databases (loaded from a list of folders, later folders
/// winning) and the learned model; ranks candidates and remembers its decisions.
pub struct Selector {
    devices: Vec<Arc<dyn Backend>>,
    databases: HashMap<String, TuningDb>,
    model: Option<Model>,
    /// Decisions already made, per (shape, transposes, target).
    decisions: Mutex<HashMap<DecisionKey, Arc<Selection>>>,
    /// Files that were found but could not be used, with why (reported once, at load).
    pub problems: Vec<String>,
}

impl Selector {
    /// Loads, for every device of `backends`, its database from each of `dirs` (later folders replace
    /// earlier ones). Unusable files are logged once and listed in `problems`, never fatal.
    pub fn load(backends: &[Arc<dyn Backend>], dirs: &[PathBuf]) -> Self {
        let mut databases = HashMap::new();
        let mut problems = Vec::new();
        for backend in backends {
            let key = &backend.info().key;
            for dir in dirs {
                match TuningDb::load(dir, key) {
                    Ok(Some(db)) => {
                        databases.insert(key.clone(), db);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        log::warn!("ignoring {e}");
                        problems.push(e.to_string());
                    }
                }
            }
        }
        // The model of exactly the devices that have measurements, as `tune` trains it.
        let keys: Vec<String> = backends
            .iter()
            .map(|b| b.info().key.clone())
            .filter(|key| databases.contains_key(key))
            .collect();
        let mut model = None;
        for dir in dirs {
            match Model::load(dir, &keys) {
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
            model,
            decisions: Mutex::new(HashMap::new()),
            problems,
        }
    }

    /// As [`Selector::select`], remembering the decision: later calls for the same shape,
    /// transposes and target return it without ranking again.
    pub fn select_cached(&self, target: &Target, problem: &GemmProblem) -> Result<Arc<Selection>> {
        let key = (
            problem.m,
            problem.n,
            problem.k,
            problem.trans_a,
            problem.trans_b,
            target.clone(),
        );
        if let Some(found) = self.lock_decisions().get(&key) {
            return Ok(found.clone());
        }
        let selection = Arc::new(self.select(target, problem)?);
        self.lock_decisions().insert(key, selection.clone());
        Ok(selection)
    }

    fn lock_decisions(&self) -> std::sync::MutexGuard<'_, HashMap<DecisionKey, Arc<Selection>>> {
        self.decisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The devices this selector ranks.
    pub fn devices(&self) -> &[Arc<dyn Backend>] {
        &self.devices
    }

    /// The learned model in use, if one was found for this host's devices.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// The shipped databases, then the user's.
    pub fn default_dirs() -> Vec<PathBuf> {
        vec![db::shipped_dir(), db::user_dir()]
    }

    fn describe(&self, choice: &Choice, shape: Shape) -> Candidate {
        let info = choice.backend.info();
        let measured = self
            .databases
            .get(&info.key)
            .and_then(|db| db.e2e_estimate(shape, &choice.kernel));
        Candidate {
            backend: info.backend.to_string(),
            api: info.api.clone(),
            device: info.name.clone(),
            kernel: choice.kernel.clone(),
            predicted_gflops: measured,
        }
    }

    /// Ranks every candidate for `problem`: by measured GFLOPS where this shape was measured, else
    /// by the model's prediction, else in the prior's order; candidates without a number follow in
    /// the prior's order. The first is the choice, the rest are the fallbacks.
    pub fn select(&self, target: &Target, problem: &GemmProblem) -> Result<Selection> {
        let shape = Shape::new(problem.m, problem.n, problem.k);
        let prior = prior_order(&self.devices, target, problem);
        if prior.is_empty() {
            return Err(why_no_candidate(&self.devices, target, problem));
        }
        let mut ranked: Vec<(Choice, Candidate)> = prior
            .into_iter()
            .map(|choice| {
                let candidate = self.describe(&choice, shape);
                (choice, candidate)
            })
            .collect();
        let mut source = Source::Prior;
        if ranked.iter().any(|(_, c)| c.predicted_gflops.is_some()) {
            source = Source::Database;
        } else if let Some(model) = &self.model {
            for (choice, candidate) in &mut ranked {
                let info = choice.backend.info();
                candidate.predicted_gflops = model.predict(
                    problem.m,
                    problem.n,
                    problem.k,
                    info.backend,
                    &info.key,
                    &choice.kernel,
                );
            }
            if ranked.iter().any(|(_, c)| c.predicted_gflops.is_some()) {
                source = Source::Model;
            }
        }
        // Stable: candidates without a number keep the prior's order, after those with one.
        let score = |c: &Candidate| c.predicted_gflops.unwrap_or(f64::NEG_INFINITY);
        ranked.sort_by(|(_, a), (_, b)| score(b).total_cmp(&score(a)));
        let (order, candidates): (Vec<Choice>, Vec<Candidate>) = ranked.into_iter().unzip();
        let mut candidates = candidates.into_iter();
        Ok(Selection {
            chosen: candidates.next().expect("at least one candidate"),
            runner_up: candidates.next(),
            source,
            order,
        })
    }
}
