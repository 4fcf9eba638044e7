#![warn(missing_docs)]
//! Tuning as a library: measure every candidate (backend, kernel) over a spread of shapes, keep the
//! measurements in one tuning database per device, and train the selector's model from them.
//!
//! Nothing here prints. Progress is reported through a callback of [`PlanEvent`]s, and the outcome
//! is returned as data ([`PlanOutcome`], [`TuneReport`]); `tilegemm bench`, `tune` and `train` are
//! thin views of these functions.
//!
//! ```no_run
//! use tilegemm::bench::BenchConfig;
//! use tilegemm::select::db::user_dir;
//! use tilegemm::tune::{default_tune_shapes, tune, TuneOptions, DEFAULT_FOLDS};
//! use tilegemm::{Engine, Target};
//!
//! let engine = Engine::new();
//! let options = TuneOptions {
//!     out: user_dir().expect("HOME or TILEGEMM_CACHE is set"),
//!     config: BenchConfig::default(),
//!     budget: None,
//!     train: true,
//!     folds: DEFAULT_FOLDS,
//! };
//! let report = tune(&engine, &Target::default(), &default_tune_shapes(), &options, &mut |_| {})?;
//! println!("{} measurements, {} failed", report.measured, report.failures.len());
//! # Ok::<(), tilegemm::Error>(())
//! ```

use crate::bench::{measure, measure_resident_chain, BenchConfig, Measurement, Operands};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::problem::Shape;
use crate::select::calibration::{calibrate, Calibration};
use crate::select::db::{user_dir, Row, TuningDb};
use crate::select::model::Model;
use crate::select::{candidates, Target};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The default spread of `tune`: squares, non-squares, tall-skinny, small K.
const TUNE_SHAPES: &str = "64,128,256,512,256x64x512,64x256x512,1024x16x256,16x1024x256,512x512x16";

/// The spread of `tune --budget`, cheapest first (by flops, 2·M·N·K): the default spread and
/// larger shapes, up to 2048³.
const TUNE_SHAPES_BUDGETED: &str =
    "64,128,1024x16x256,16x1024x256,512x512x16,256x64x512,64x256x512,2048x64x64,64x64x2048,\
     256,128x1024x256,1024x128x256,384,1024x1024x64,512,1024x256x1024,256x1024x1024,768,\
     2048x2048x128,1024,1400,2048";

/// Folds of the model's held-out quality estimate when the caller names none.
pub const DEFAULT_FOLDS: usize = 5;

fn parse_shapes(list: &str) -> Vec<Shape> {
    list.split(',')
        .map(|s| s.parse().expect("the built-in shape lists parse"))
        .collect()
}

/// The spread `tune` measures by default: squares 64–512, non-squares, tall-skinny and small-K
/// shapes.
pub fn default_tune_shapes() -> Vec<Shape> {
    parse_shapes(TUNE_SHAPES)
}

/// The spread for a time budget, cheapest first (by flops), so that a budget cut keeps the
/// cheapest shapes: every shape of [`default_tune_shapes`] and larger ones up to 2048³.
pub fn budgeted_tune_shapes() -> Vec<Shape> {
    parse_shapes(TUNE_SHAPES_BUDGETED)
}

/// A pair is skipped when its warm-up and fewest repetitions are predicted to take this many times
/// the budget of one measurement (rates grow with size, so the prediction errs long).
const SKIP_FACTOR: f64 = 2.0;

/// What [`measure_shapes`] is doing, as it happens (for a progress bar or a log).
#[derive(Debug)]
pub enum PlanEvent<'a> {
    /// The plan is made: this many (device, kernel, shape) measurements, unless the deadline cuts it.
    Planned {
        /// Candidates summed over the shapes.
        measurements: usize,
    },
    /// A measurement starts.
    Started {
        /// The device's name.
        device: &'a str,
        /// The kernel measured.
        kernel: &'a str,
        /// The shape measured.
        shape: Shape,
    },
    /// A measurement finished.
    Measured(&'a Measurement),
    /// A measurement failed; the plan goes on.
    Failed(&'a Failure),
    /// A pair was not measured at a shape: its rate at a smaller shape predicts calls too slow for
    /// the budget of one measurement.
    Skipped(&'a Skipped),
    /// The deadline passed: the shapes not started yet are skipped.
    BudgetSpent {
        /// Shapes measured (whole) before the deadline.
        measured: usize,
        /// Shapes in the plan.
        shapes: usize,
    },
}

/// A (device, kernel, shape) whose measurement failed, and why.
#[derive(Debug)]
pub struct Failure {
    /// The device's name.
    pub device: String,
    /// The kernel measured.
    pub kernel: String,
    /// The shape measured.
    pub shape: Shape,
    /// Why it failed (a build error, a device error, a time-out…).
    pub error: Error,
}

/// A (device, kernel, shape) left unmeasured because it would take too long.
#[derive(Clone, Debug)]
pub struct Skipped {
    /// The device's name.
    pub device: String,
    /// The kernel.
    pub kernel: String,
    /// The shape not measured.
    pub shape: Shape,
    /// Seconds one call would take at the pair's end-to-end rate at a smaller shape.
    pub predicted_seconds: f64,
}

/// What [`measure_shapes`] measured, in the order measured, what failed, and what it skipped.
#[derive(Debug, Default)]
pub struct PlanOutcome {
    /// One per (device, kernel, shape) that succeeded.
    pub measurements: Vec<Measurement>,
    /// One per (device, kernel, shape) that failed.
    pub failures: Vec<Failure>,
    /// One per (device, kernel, shape) predicted too slow to measure within the budget.
    pub skipped: Vec<Skipped>,
}

/// Seconds one call of `flops` would take on (device, kernel), from the end-to-end rate of its
/// latest measurement in `measured`; None when it has none.
fn predicted_call_seconds(
    measured: &[Measurement],
    device_key: &str,
    kernel: &str,
    flops: f64,
) -> Option<f64> {
    let last = measured
        .iter()
        .rev()
        .find(|m| m.device_key == device_key && m.kernel == kernel)?;
    Some(flops / (last.e2e_gflops.max(1e-9) * 1e9))
}

/// Measures every candidate (backend, kernel) of `target` (`Engine::candidates`) at every shape,
/// shape by shape in the order given, with `config` per measurement. A failed measurement is
/// reported through `on_event` and kept in the outcome, not fatal. Past `deadline`, no new shape is
/// started: a shape is measured whole or not at all.
///
/// Fails when no candidate fits any of the shapes, or when a shape's operands cannot be allocated.
pub fn measure_shapes(
    engine: &Engine,
    target: &Target,
    shapes: &[Shape],
    config: &BenchConfig,
    deadline: Option<Instant>,
    on_event: &mut dyn FnMut(PlanEvent<'_>),
) -> Result<PlanOutcome> {
    let plan: Vec<_> = shapes
        .iter()
        .map(|&shape| {
            (
                shape,
                candidates(
                    engine.backends(),
                    target,
                    &shape.problem().with_packed_batch(config.batch),
                ),
            )
        })
        .collect();
    let measurements: usize = plan.iter().map(|(_, choices)| choices.len()).sum();
    if measurements == 0 {
        return Err(Error::NotFound(
            "nothing to measure: no (backend, kernel) matches and fits these shapes".to_string(),
        ));
    }
    on_event(PlanEvent::Planned { measurements });
    let mut outcome = PlanOutcome::default();
    for (done, (shape, choices)) in plan.into_iter().enumerate() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            on_event(PlanEvent::BudgetSpent {
                measured: done,
                shapes: shapes.len(),
            });
            break;
        }
        let problem = shape.problem().with_packed_batch(config.batch);
        let mut operands = Operands::random(&problem, 42)?;
        for choice in choices {
            let info = choice.backend.info();
            let device = &info.name;
            // A warm-up and the fewest repetitions must fit the budget of one measurement: a
            // pair too slow for it at a smaller shape (lavapipe's tile16 needs 40 s per 1024³ call
            // on 2 cores) is skipped and reported, not left to hold the whole plan up.
            let calls = (config.warmup + config.min_reps.max(1)) as f64;
            let predicted = predicted_call_seconds(
                &outcome.measurements,
                &info.key,
                &choice.kernel,
                problem.flops(),
            );
            if let Some(seconds) =
                predicted.filter(|s| s * calls > config.budget_seconds.max(1e-3) * SKIP_FACTOR)
            {
                let skipped = Skipped {
                    device: device.clone(),
                    kernel: choice.kernel.clone(),
                    shape,
                    predicted_seconds: seconds,
                };
                on_event(PlanEvent::Skipped(&skipped));
                outcome.skipped.push(skipped);
                continue;
            }
            on_event(PlanEvent::Started {
                device,
                kernel: &choice.kernel,
                shape,
            });
            let measured = measure(
                choice.backend.as_ref(),
                &choice.kernel,
                &problem,
                &mut operands,
                config,
            );
            let measured = measured.and_then(|mut m| {
                if config.resident_chain > 0 {
                    m.resident_gflops = Some(measure_resident_chain(
                        &choice.backend,
                        &choice.kernel,
                        &problem,
                        &operands,
                        config.resident_chain,
                    )?);
                }
                Ok(m)
            });
            match measured {
                Ok(m) => {
                    on_event(PlanEvent::Measured(&m));
                    outcome.measurements.push(m);
                }
                Err(error) => {
                    let failure = Failure {
                        device: device.clone(),
                        kernel: choice.kernel,
                        shape,
                        error,
                    };
                    on_event(PlanEvent::Failed(&failure));
                    outcome.failures.push(failure);
                }
            }
        }
    }
    Ok(outcome)
}

/// How [`tune`] measures and where it keeps the results.
#[derive(Clone, Debug)]
pub struct TuneOptions {
    /// The folder of the databases and the model: what it already holds is loaded and added to
    /// (e.g. `select::db::user_dir()`, where the engine looks).
    pub out: PathBuf,
    /// How much to measure per (device, kernel, shape).
    pub config: BenchConfig,
    /// Total time to spend measuring: no shape is started after it.
    pub budget: Option<Duration>,
    /// Train the model after measuring (off: e.g. one process per shape, [`train`] once at the end).
    pub train: bool,
    /// Folds of the model's held-out quality estimate ([`DEFAULT_FOLDS`]).
    pub folds: usize,
}

/// A device's tuning database, as saved.
#[derive(Clone, Debug)]
pub struct SavedDatabase {
    /// Its rows: those loaded from the folder, with this run's measurements recorded over them.
    pub database: TuningDb,
    /// The file written.
    pub path: PathBuf,
}

/// The tuning databases in the files `paths` and their devices' calibrations: each from the
/// `.calibration.json` beside its database (as `tune` and `models/` keep them), else from the user
/// cache. A device without either is trained without (the model leaves it out and says so).
pub fn read_training_data(paths: &[PathBuf]) -> Result<(Vec<TuningDb>, Vec<Calibration>)> {
    let mut databases = Vec::new();
    let mut calibrations = Vec::new();
    for path in paths {
        let db = TuningDb::read_file(path)?;
        let beside = path.parent().unwrap_or(Path::new("."));
        let found = match Calibration::load(beside, &db.device_key)? {
            Some(found) => Some(found),
            None => match user_dir() {
                Some(cache) => Calibration::load(&cache, &db.device_key)?,
                None => None,
            },
        };
        calibrations.extend(found);
        databases.push(db);
    }
    Ok((databases, calibrations))
}

/// A trained model and the file it was saved to.
pub struct TrainedModel {
    /// The model; its `quality` is the held-out estimate, `None` with too few shapes to hold out.
    pub model: Model,
    /// The file written, named after the devices it knows.
    pub path: PathBuf,
}

/// What was trained on and how well, and where it is (the trees themselves are left out).
impl fmt::Debug for TrainedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrainedModel")
            .field("devices", &self.model.devices)
            .field("rows", &self.model.rows)
            .field("quality", &self.model.quality)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Whether [`tune`] trained a model.
#[derive(Debug)]
pub enum Training {
    /// `TuneOptions::train` was off.
    Skipped,
    /// Trained and saved.
    Trained(TrainedModel),
    /// Training was asked for and failed (e.g. no measurement to learn from); the databases
    /// are saved all the same.
    Failed(Error),
}

/// What [`tune`] did.
#[derive(Debug)]
pub struct TuneReport {
    /// Every device that holds measurements (of this run or earlier ones), as saved in `out`.
    pub databases: Vec<SavedDatabase>,
    /// Measurements taken by this run.
    pub measured: usize,
    /// Measurements that failed (not recorded).
    pub failures: Vec<Failure>,
    /// Files in `out` that did not load (corrupt, foreign): their devices started afresh, and
    /// saving keeps each such file aside as `*.corrupt`.
    pub started_afresh: Vec<Error>,
    /// The model trained on `databases`, or why there is none.
    pub model: Training,
}

/// Measures every candidate of `target` at `shapes` ([`measure_shapes`], within
/// `options.budget`), records the measurements into each device's tuning database in
/// `options.out` (loaded first, so runs accumulate), saves every database that holds
/// measurements, and trains the model on them unless `options.train` is off.
///
/// Failed measurements are counted in the report, not fatal; an error means nothing could be
/// measured or a database could not be saved.
pub fn tune(
    engine: &Engine,
    target: &Target,
    shapes: &[Shape],
    options: &TuneOptions,
    on_event: &mut dyn FnMut(PlanEvent<'_>),
) -> Result<TuneReport> {
    let deadline = options.budget.map(|budget| Instant::now() + budget);
    // Files that do not load are reported; appending keeps them aside (`*.corrupt`).
    let started_afresh: Vec<Error> = engine
        .backends()
        .iter()
        .filter_map(|backend| TuningDb::load(&options.out, &backend.info().key).err())
        .collect();
    let outcome = measure_shapes(engine, target, shapes, &options.config, deadline, on_event)?;
    // Appended under each database's lock and read back whole: `tune` processes sharing a folder
    // lose none of each other's rows. The model learns from every device that holds
    // measurements, described by its calibration, which is kept beside the device's database.
    let mut databases = Vec::new();
    let mut paths = Vec::new();
    for backend in engine.backends() {
        let info = backend.info();
        let rows: Vec<Row> = outcome
            .measurements
            .iter()
            .filter(|m| m.device_key == info.key)
            .map(|m| Row::new(Shape::new(m.m, m.n, m.k), &m.kernel, m.gflops, m.e2e_gflops))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let path = TuningDb::append(&options.out, info, rows)?;
        databases.push(TuningDb::read_file(&path)?);
        paths.push(path);
    }
    let calibrations: Vec<Calibration> = engine
        .backends()
        .iter()
        .filter(|b| databases.iter().any(|db| db.device_key == b.info().key))
        .filter_map(|b| {
            let found = engine.selector().calibration(b.as_ref());
            found
                .map(|c| c.as_ref().clone())
                .or_else(|| calibrate(b.as_ref()))
        })
        .collect();
    for calibration in &calibrations {
        calibration.save(&options.out)?;
    }
    let model = if !options.train {
        Training::Skipped
    } else {
        match train(&databases, &calibrations, options.folds, &options.out) {
            Ok(trained) => Training::Trained(trained),
            Err(e) => Training::Failed(e),
        }
    };
    Ok(TuneReport {
        databases: databases
            .into_iter()
            .zip(paths)
            .map(|(database, path)| SavedDatabase { database, path })
            .collect(),
        measured: outcome.measurements.len(),
        failures: outcome.failures,
        started_afresh,
        model,
    })
}

/// Trains the selector's model on `databases` (one host's devices, each described by its
/// calibration in `calibrations`), with a `folds`-fold held-out quality estimate over shapes, and
/// saves it into `out`, where the engine finds it for exactly these devices (and other hosts'
/// engines, through their own calibrations, when they have no model of their own).
pub fn train(
    databases: &[TuningDb],
    calibrations: &[Calibration],
    folds: usize,
    out: &Path,
) -> Result<TrainedModel> {
    let model = Model::train(databases, calibrations, folds)?;
    let path = model.save(out)?;
    Ok(TrainedModel { model, path })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuBackend;
    use crate::engine::EngineOptions;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn the_budgeted_spread_holds_the_default_one_cheapest_first() {
        let default = default_tune_shapes();
        let budgeted = budgeted_tune_shapes();
        assert_eq!(default.len(), 9);
        assert!(default.iter().all(|shape| budgeted.contains(shape)));
        let unique: HashSet<_> = budgeted.iter().collect();
        assert_eq!(unique.len(), budgeted.len(), "no shape twice");
        let flops: Vec<f64> = budgeted.iter().map(|s| s.problem().flops()).collect();
        assert!(flops.windows(2).all(|w| w[0] <= w[1]), "{budgeted:?}");
        assert_eq!(budgeted.last(), Some(&Shape::new(2048, 2048, 2048)));
    }

    fn cpu_engine() -> Engine {
        let options = EngineOptions {
            selector_data: Vec::new(),
            ..EngineOptions::default()
        };
        Engine::with_backends(vec![Arc::new(CpuBackend::new())], options)
    }

    fn options(out: PathBuf, train: bool) -> TuneOptions {
        TuneOptions {
            out,
            config: BenchConfig {
                warmup: 0,
                reps: 1,
                min_reps: 1,
                budget_seconds: 0.0,
                ..BenchConfig::default()
            },
            budget: None,
            train,
            folds: 2,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tilegemm-tune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn rows(db: &TuningDb) -> Vec<(usize, usize, usize, &str)> {
        let mut rows: Vec<_> = db
            .rows
            .iter()
            .map(|r| (r.m, r.n, r.k, r.kernel.as_str()))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn tune_writes_the_shapes_asked_for_accumulates_and_trains() {
        let dir = temp_dir("cpu");
        let engine = cpu_engine();
        let shapes = [Shape::new(16, 24, 8), Shape::new(32, 32, 32)];
        let mut events = Vec::new();
        let report = tune(
            &engine,
            &Target::default(),
            &shapes,
            &options(dir.clone(), false),
            &mut |event| events.push(format!("{event:?}")),
        )
        .unwrap();
        assert_eq!(report.measured, 2);
        assert!(report.failures.is_empty() && report.started_afresh.is_empty());
        assert!(matches!(report.model, Training::Skipped));
        assert_eq!(
            events.len(),
            1 + 2 * 2,
            "planned, then started and measured: {events:?}"
        );
        let [saved] = report.databases.as_slice() else {
            panic!("one device: {:?}", report.databases);
        };
        let key = &engine.backends()[0].info().key;
        // Compared without the GFLOPS: JSON does not round-trip every f64 to the last bit.
        let on_disk = TuningDb::load(&dir, key).unwrap().unwrap();
        assert_eq!(saved.path, dir.join(TuningDb::file_name(key)));
        assert_eq!(rows(&on_disk), rows(&saved.database));
        assert_eq!(
            rows(&on_disk),
            [(16, 24, 8, "native"), (32, 32, 32, "native")]
        );

        // A second run adds its shape to what the folder holds, then trains on all three.
        let report = tune(
            &engine,
            &Target::default(),
            &[Shape::new(8, 8, 8)],
            &options(dir.clone(), true),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(report.measured, 1);
        assert_eq!(rows(&report.databases[0].database).len(), 3);
        let Training::Trained(trained) = &report.model else {
            panic!("no model: {:?}", report.model);
        };
        assert_eq!(trained.model.rows, 3);
        assert!(trained.path.starts_with(&dir) && trained.path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spent_budget_measures_no_shape_and_says_so() {
        let engine = cpu_engine();
        let mut budget_spent = None;
        let outcome = measure_shapes(
            &engine,
            &Target::default(),
            &[Shape::new(8, 8, 8)],
            &BenchConfig::default(),
            Some(Instant::now()),
            &mut |event| {
                if let PlanEvent::BudgetSpent { measured, shapes } = event {
                    budget_spent = Some((measured, shapes));
                }
            },
        )
        .unwrap();
        assert!(outcome.measurements.is_empty());
        assert_eq!(budget_spent, Some((0, 1)));
    }

    #[test]
    fn nothing_to_measure_is_an_error() {
        let target = Target {
            kernel: Some("no such kernel".to_string()),
            ..Target::default()
        };
        let error = measure_shapes(
            &cpu_engine(),
            &target,
            &[Shape::new(8, 8, 8)],
            &BenchConfig::default(),
            None,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(error.to_string().contains("nothing to measure"), "{error}");
    }
}
