//! The selector: which (backend, kernel) should run a shape on this host.
//!
//! Decisions come, in order, from the tuning database (shapes measured on this host's devices), from
//! the learned model (gradient-boosted trees trained on those measurements, for unmeasured shapes)
//! and from the engine's prior. Candidates are only the pairs that pass the devices' capability checks.
//! Measurements are compared by end-to-end GFLOPS: what a caller of `Engine::gemm` experiences.

pub mod db;
pub mod model;

use crate::engine::{Choice, Engine, Target};
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
    pub backend: String,
    pub api: String,
    pub device: String,
    pub kernel: String,
    /// End-to-end GFLOPS at this shape: measured, or predicted by the model.
    pub predicted_gflops: Option<f64>,
}

/// The selector's answer for one shape.
#[derive(Clone, Debug, Serialize)]
pub struct Selection {
    #[serde(flatten)]
    pub chosen: Candidate,
    pub source: Source,
    pub runner_up: Option<Candidate>,
}

/// What a cached decision depends on: shape, transposes and the caller's target.
type DecisionKey = (usize, usize, usize, Transpose, Transpose, Target);

/// The tuning databases of an engine's devices, loaded from a list of folders (later folders win).
pub struct Selector {
    databases: HashMap<String, TuningDb>,
    model: Option<Model>,
    /// Decisions already made, per (shape, transposes, target).
    decisions: Mutex<HashMap<DecisionKey, Arc<Selection>>>,
    /// Files that were found but could not be used, with why (reported once, at load).
    pub problems: Vec<String>,
}

impl Selector {
    /// Loads, for every device of `engine`, its database from each of `dirs` (later folders replace
    /// earlier ones). Unusable files are logged once and listed in `problems`, never fatal.
    pub fn load(engine: &Engine, dirs: &[PathBuf]) -> Self {
        let mut databases = HashMap::new();
        let mut problems = Vec::new();
        for backend in engine.backends() {
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
        let keys: Vec<String> = engine
            .backends()
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
            databases,
            model,
            decisions: Mutex::new(HashMap::new()),
            problems,
        }
    }

    /// As [`Selector::select`], remembering the decision: later calls for the same shape,
    /// transposes and target return it without ranking again.
    pub fn select_cached(
        &self,
        engine: &Engine,
        target: &Target,
        problem: &GemmProblem,
    ) -> Result<Arc<Selection>> {
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
        let selection = Arc::new(self.select(engine, target, problem)?);
        self.lock_decisions().insert(key, selection.clone());
        Ok(selection)
    }

    fn lock_decisions(&self) -> std::sync::MutexGuard<'_, HashMap<DecisionKey, Arc<Selection>>> {
        self.decisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The learned model in use, if one was found for this host's devices.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// The shipped databases, then the user's.
    pub fn default_dirs() -> Vec<PathBuf> {
        vec![db::shipped_dir(), db::user_dir()]
    }

    /// The candidate pairs for `problem` with what the databases know of them, best first.
    pub fn rank(&self, engine: &Engine, target: &Target, problem: &GemmProblem) -> Vec<Candidate> {
        let shape = Shape::new(problem.m, problem.n, problem.k);
        best_first(
            engine
                .candidates(target, problem)
                .iter()
                .map(|choice| self.describe(choice, shape))
                .collect(),
        )
    }

    fn describe(&self, choice: &Choice, shape: Shape) -> Candidate {
        let info = choice.backend.info();
        let measured = self
            .databases
            .get(&info.key)
            .and_then(|db| db.lookup(shape, &choice.kernel))
            .map(|row| row.e2e_gflops);
        Candidate {
            backend: info.backend.to_string(),
            api: info.api.clone(),
            device: info.name.clone(),
            kernel: choice.kernel.clone(),
            predicted_gflops: measured,
        }
    }

    /// The pair to run `problem` with: the best measured one, else the model's best, else the prior.
    pub fn select(
        &self,
        engine: &Engine,
        target: &Target,
        problem: &GemmProblem,
    ) -> Result<Selection> {
        let shape = Shape::new(problem.m, problem.n, problem.k);
        let choices = engine.candidates(target, problem);
        let described: Vec<Candidate> = choices.iter().map(|c| self.describe(c, shape)).collect();

        let measured = best_first(
            described
                .iter()
                .filter(|c| c.predicted_gflops.is_some())
                .cloned()
                .collect(),
        );
        if let Some(selection) = first_two(measured, Source::Database) {
            return Ok(selection);
        }
        if let Some(model) = &self.model {
            let predicted = choices
                .iter()
                .zip(&described)
                .filter_map(|(choice, candidate)| {
                    let info = choice.backend.info();
                    let gflops = model.predict(
                        problem.m,
                        problem.n,
                        problem.k,
                        info.backend.as_str(),
                        &info.key,
                        &choice.kernel,
                    )?;
                    Some(Candidate {
                        predicted_gflops: Some(gflops),
                        ..candidate.clone()
                    })
                })
                .collect();
            if let Some(selection) = first_two(best_first(predicted), Source::Model) {
                return Ok(selection);
            }
        }
        let chosen = self.describe(&engine.choose(target, problem)?, shape);
        let runner_up = described.into_iter().find(|c| {
            !(c.device == chosen.device && c.kernel == chosen.kernel && c.backend == chosen.backend)
        });
        Ok(Selection {
            chosen,
            source: Source::Prior,
            runner_up,
        })
    }
}

/// Sorts candidates by predicted GFLOPS, highest first; unknown ones last, in their given order.
fn best_first(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    let score = |c: &Candidate| c.predicted_gflops.unwrap_or(f64::NEG_INFINITY);
    candidates.sort_by(|a, b| score(b).total_cmp(&score(a)));
    candidates
}

/// The first candidate as the choice and the second as the runner-up, if there is a first.
fn first_two(candidates: Vec<Candidate>, source: Source) -> Option<Selection> {
    let mut candidates = candidates.into_iter();
    let chosen = candidates.next()?;
    Some(Selection {
        chosen,
        source,
        runner_up: candidates.next(),
    })
}
