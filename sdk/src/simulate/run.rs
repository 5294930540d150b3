//! `run`: every unit through `Snapshot::assign_at` for every simulated experiment, counted
//! into flat integer counters, then turned into a [`SimulationReport`].

use super::engine::{drive, Tally};
use super::error::SimulateError;
use super::input::UnitSource;
use super::report::{
    ExperimentReport, IndependenceReport, LayerReport, LayerSliceReport, PAdjustment, ReasonCounts,
    SimulationReport, SrmReport, VariantReport,
};
use super::stats::{goodness_of_fit, independence, ChiSquare, Verdict};
use super::SimulateOptions;
use crate::assignment::Reason;
use crate::config::ExperimentConfig;
use crate::registry::Snapshot;
use crate::unit::Unit;

/// Number of [`Reason`]s; counters are indexed by `reason as usize` (the order of `Reason::ALL`).
const REASONS: usize = Reason::ALL.len();
/// Flag in a per-unit code: the strategy placed the unit (the low bits hold variant + 1).
const BY_STRATEGY: u32 = 1 << 31;

/// Simulates `source` on `snapshot`: splits, SRM tests, layer exclusivity and independence.
///
/// ```
/// use abkit::simulate::{run, SimulateOptions, SyntheticSpec, UnitSource};
/// let sdk = abkit::Sdk::from_toml_str(
///     "[[experiments]]\nkey = \"e\"\nvariants = [ { name = \"a\", weight = 1 }, { name = \"b\", weight = 1 } ]\n",
/// ).unwrap();
/// let report = run(&sdk.snapshot(), UnitSource::synthetic(SyntheticSpec::new(10_000)), &SimulateOptions::default()).unwrap();
/// assert_eq!(report.units, 10_000);
/// assert_eq!(report.experiment("e").unwrap().enrolled, 10_000);
/// ```
pub fn run(
    snapshot: &Snapshot,
    source: UnitSource,
    opts: &SimulateOptions,
) -> Result<SimulationReport, SimulateError> {
    let now_ms = opts.now_ms.unwrap_or_else(super::time::now_ms);
    let input = source.name();
    let selected = select(snapshot, &opts.experiments)?;
    let plan = Plan::new(snapshot, &selected, now_ms);
    let outcome = drive(&plan, source, opts)?;
    let c = &outcome.counts;
    let units = c[0];

    let experiments = plan
        .exps
        .iter()
        .map(|e| experiment_report(e, c, units))
        .collect();
    let cluster_level = |i: usize| plan.exps[i].cluster.is_some();
    let layers = plan
        .layers
        .iter()
        .map(|l| {
            let by_strategy = c[l.off + 1];
            LayerReport {
                name: l.name.clone(),
                experiments: l
                    .members
                    .iter()
                    .map(|&m| plan.exps[m].config.key.clone())
                    .collect(),
                units_in_more_than_one: c[l.off],
                units_in_more_than_one_by_strategy: by_strategy,
                verdict: if by_strategy == 0 {
                    Verdict::Ok
                } else {
                    Verdict::Mismatch
                },
            }
        })
        .collect();
    let independence = plan
        .pairs
        .iter()
        .map(|p| {
            let (na, nb) = (plan.exps[p.a].nv, plan.exps[p.b].nv);
            let table = &c[p.off..p.off + na * nb];
            IndependenceReport {
                a: plan.exps[p.a].config.key.clone(),
                b: plan.exps[p.b].config.key.clone(),
                units: table.iter().sum(),
                // Both randomised in clusters: units are not independent draws in either.
                test: if cluster_level(p.a) && cluster_level(p.b) {
                    ChiSquare::not_applicable()
                } else {
                    independence(table, na, nb)
                },
            }
        })
        .collect();
    let mut report = SimulationReport {
        units,
        rows_read: outcome.rows_read,
        input,
        now_ms,
        skipped_lines: outcome.skipped,
        experiments,
        layers,
        independence,
        threads: outcome.threads,
        elapsed: outcome.elapsed,
        p_adjustment: PAdjustment::Holm,
        tests: 0,
    };
    report.adjust();
    Ok(report)
}

/// The experiments to simulate: `keys` (checked), or all in configuration order.
pub(crate) fn select<'s>(
    snapshot: &'s Snapshot,
    keys: &[String],
) -> Result<Vec<&'s ExperimentConfig>, SimulateError> {
    let all = &snapshot.config().experiments;
    if keys.is_empty() {
        return Ok(all.iter().collect());
    }
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let e = snapshot
            .experiment(key)
            .ok_or_else(|| SimulateError::UnknownExperiment {
                key: key.clone(),
                known: known(all),
            })?;
        if !out.iter().any(|o: &&ExperimentConfig| o.key == e.key) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Comma-separated experiment keys, or `(none)`.
pub(crate) fn known(all: &[ExperimentConfig]) -> String {
    if all.is_empty() {
        "(none)".to_string()
    } else {
        all.iter()
            .map(|e| e.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One simulated experiment and where its counters start.
struct ExpPlan<'s> {
    config: &'s ExperimentConfig,
    /// Resolved once: no per-unit lookup by key.
    id: Option<crate::registry::ExperimentId>,
    nv: usize,
    /// `REASONS` counters: not enrolled, by reason.
    off_ne: usize,
    /// `nv` counters: enrolled for another reason than the strategy (overrides).
    off_o: usize,
    /// `nv` counters: placed by the strategy.
    off_a: usize,
    /// The attribute the strategy randomises by (guessed from `strategy_config`), if any.
    cluster: Option<String>,
    /// The share the holdouts covering the experiment hold out together, if any cover it.
    holdout_share: Option<f64>,
    /// Per value of that attribute: bit `v` = some unit placed in variant `v` by the strategy,
    /// bit 127 = some unit left outside coverage. A set: the same for any thread count.
    clusters: std::sync::Mutex<rustc_hash::FxHashMap<String, u128>>,
}

/// Cluster bit: a unit of this cluster was left outside coverage by the strategy.
const CLUSTER_DECLINED: u128 = 1 << 127;

struct LayerPlan {
    name: String,
    members: Vec<usize>,
    /// 2 counters: units in > 1 member (any reason), (by strategy).
    off: usize,
}

struct PairPlan {
    a: usize,
    b: usize,
    /// `nv(a) * nv(b)` counters: the contingency table.
    off: usize,
}

/// Everything counted, laid out in one flat vector; counter 0 is the number of units.
struct Plan<'s> {
    snapshot: &'s Snapshot,
    now_ms: u64,
    exps: Vec<ExpPlan<'s>>,
    layers: Vec<LayerPlan>,
    pairs: Vec<PairPlan>,
    width: usize,
}

impl<'s> Plan<'s> {
    fn new(snapshot: &'s Snapshot, selected: &[&'s ExperimentConfig], now_ms: u64) -> Self {
        let mut width = 1;
        let mut take = |n: usize| {
            let off = width;
            width += n;
            off
        };
        let exps: Vec<ExpPlan<'s>> = selected
            .iter()
            .map(|&config| {
                let nv = config.variants.len().max(1);
                ExpPlan {
                    config,
                    id: snapshot.experiment_id(&config.key),
                    nv,
                    off_ne: take(REASONS),
                    off_o: take(nv),
                    off_a: take(nv),
                    cluster: match snapshot.randomisation(&config.key) {
                        crate::strategy::Randomisation::Attribute { attribute, .. } => {
                            Some(attribute)
                        }
                        crate::strategy::Randomisation::UnitId => None,
                    },
                    clusters: Default::default(),
                    holdout_share: {
                        let covering: Vec<f64> = snapshot
                            .config()
                            .holdouts
                            .iter()
                            .filter(|h| h.covers(config))
                            .map(|h| f64::from(h.coverage_bp) / 10_000.0)
                            .collect();
                        (!covering.is_empty())
                            .then(|| 1.0 - covering.iter().map(|c| 1.0 - c).product::<f64>())
                    },
                }
            })
            .collect();
        let mut layers: Vec<LayerPlan> = Vec::new();
        for (i, e) in exps.iter().enumerate() {
            if let Some(slice) = &e.config.layer {
                match layers.iter_mut().find(|l| l.name == slice.layer) {
                    Some(l) => l.members.push(i),
                    None => layers.push(LayerPlan {
                        name: slice.layer.clone(),
                        members: vec![i],
                        off: 0,
                    }),
                }
            }
        }
        for l in &mut layers {
            l.off = take(2);
        }
        let mut pairs = Vec::new();
        for a in 0..exps.len() {
            for b in a + 1..exps.len() {
                let same_layer = matches!((&exps[a].config.layer, &exps[b].config.layer), (Some(x), Some(y)) if x.layer == y.layer);
                // A disabled experiment enrols nobody: nothing to test.
                let disabled = !exps[a].config.enabled || !exps[b].config.enabled;
                if !same_layer && !disabled {
                    pairs.push(PairPlan {
                        a,
                        b,
                        off: take(exps[a].nv * exps[b].nv),
                    });
                }
            }
        }
        Plan {
            snapshot,
            now_ms,
            exps,
            layers,
            pairs,
            width,
        }
    }
}

impl Tally for Plan<'_> {
    fn width(&self) -> usize {
        self.width
    }

    #[inline]
    fn add(&self, counts: &mut [u64], codes: &mut Vec<u32>, unit: &Unit<'_>) {
        counts[0] += 1;
        codes.clear();
        for e in &self.exps {
            let a = match e.id {
                Some(id) => self.snapshot.assign_id_at(id, unit, self.now_ms),
                None => self.snapshot.assign_at(&e.config.key, unit, self.now_ms),
            };
            let code = match a.variant {
                Some(v) => {
                    // Indices come from the validated config; `min` keeps a stray one in range.
                    let v = (v.index as usize).min(e.nv - 1);
                    if a.reason == Reason::Assigned {
                        counts[e.off_a + v] += 1;
                        BY_STRATEGY | (v as u32 + 1)
                    } else {
                        counts[e.off_o + v] += 1;
                        v as u32 + 1
                    }
                }
                None => {
                    counts[e.off_ne + (a.reason as usize).min(REASONS - 1)] += 1;
                    0
                }
            };
            if let Some(value) = e.cluster.as_deref().and_then(|k| unit.attribute(k)) {
                let bit = match (code, a.reason) {
                    (c, _) if c & BY_STRATEGY != 0 => 1u128 << ((c & !BY_STRATEGY) - 1).min(126),
                    (0, Reason::OutsideCoverage) => CLUSTER_DECLINED,
                    _ => 0,
                };
                if bit != 0 {
                    let mut map = e.clusters.lock().unwrap_or_else(|p| p.into_inner());
                    match map.get_mut(value) {
                        Some(bits) => *bits |= bit,
                        None => {
                            map.insert(value.to_string(), bit);
                        }
                    }
                }
            }
            codes.push(code);
        }
        for l in &self.layers {
            let any = l.members.iter().filter(|&&m| codes[m] != 0).count();
            if any >= 2 {
                counts[l.off] += 1;
                if l.members
                    .iter()
                    .filter(|&&m| codes[m] & BY_STRATEGY != 0)
                    .count()
                    >= 2
                {
                    counts[l.off + 1] += 1;
                }
            }
        }
        for p in &self.pairs {
            let (ca, cb) = (codes[p.a], codes[p.b]);
            if ca & cb & BY_STRATEGY != 0 {
                let va = (ca & !BY_STRATEGY) as usize - 1;
                let vb = (cb & !BY_STRATEGY) as usize - 1;
                counts[p.off + va * self.exps[p.b].nv + vb] += 1;
            }
        }
    }
}

/// Builds one experiment's report from the merged counters.
fn experiment_report(e: &ExpPlan<'_>, c: &[u64], units: u64) -> ExperimentReport {
    let cfg = e.config;
    let ne = &c[e.off_ne..e.off_ne + REASONS];
    let other = &c[e.off_o..e.off_o + e.nv];
    let assigned = &c[e.off_a..e.off_a + e.nv];
    let by_strategy: u64 = assigned.iter().sum();
    let enrolled: u64 = by_strategy + other.iter().sum::<u64>();
    let ne_of = |r: Reason| ne[r as usize];
    let gated = ne_of(Reason::UnknownExperiment)
        + ne_of(Reason::Disabled)
        + ne_of(Reason::Holdout)
        + ne_of(Reason::NotTargeted)
        + ne_of(Reason::Prerequisite)
        + ne_of(Reason::MissingBucketKey)
        + ne_of(Reason::MissingAttribute);
    let eligible = units.saturating_sub(gated + (enrolled - by_strategy));

    let not_enrolled = ReasonCounts(
        Reason::ALL
            .iter()
            .filter(|&&r| !matches!(r, Reason::Override | Reason::Assigned) || ne_of(r) > 0)
            .map(|&r| (r, ne_of(r)))
            .collect(),
    );
    let total_w: u64 = cfg.variants.iter().map(|v| u64::from(v.weight)).sum();
    let slice = cfg
        .layer
        .as_ref()
        .map_or(1.0, |s| f64::from(s.end.saturating_sub(s.start)) / 10_000.0);
    let cov = f64::from(cfg.coverage_bp) / 10_000.0;
    let on = if cfg.enabled { 1.0 } else { 0.0 };
    // bucketing-v1 strategies enrol the exact (floored) bucket ranges, not the nominal shares.
    let ranges = crate::srm::range_shares(&cfg.weights(), cfg.coverage_bp)
        .filter(|_| crate::srm::uses_bucketing_v1(&cfg.strategy));
    let nominal = |i: usize| {
        if total_w == 0 {
            0.0
        } else {
            cov * f64::from(cfg.variants[i].weight) / total_w as f64
        }
    };
    let expected = |i: usize| match &ranges {
        Some(r) => r.get(i).copied().unwrap_or(0.0),
        None => nominal(i),
    };
    let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
    let variants = cfg
        .variants
        .iter()
        .enumerate()
        .map(|(i, v)| VariantReport {
            name: v.name.clone(),
            weight: v.weight,
            count: assigned[i] + other[i],
            assigned: assigned[i],
            overridden: other[i],
            expected_share: on * slice * expected(i),
            nominal_share: on * slice * nominal(i),
            observed_share: share(assigned[i], eligible),
            population_share: share(assigned[i] + other[i], units),
        })
        .collect();
    let weights: Vec<f64> = (0..cfg.variants.len()).map(expected).collect();
    let c_exact: f64 = weights.iter().sum();
    let mut srm = SrmReport {
        split: goodness_of_fit(assigned, &weights),
        coverage: goodness_of_fit(
            &[
                ne_of(Reason::OutsideLayer),
                ne_of(Reason::OutsideCoverage),
                by_strategy,
            ],
            &[1.0 - slice, slice * (1.0 - c_exact), slice * c_exact],
        ),
        holdout: e.holdout_share.map(|share| {
            let reached = units.saturating_sub(
                ne_of(Reason::UnknownExperiment)
                    + ne_of(Reason::Disabled)
                    + (enrolled - by_strategy),
            );
            let (p, method) =
                crate::srm::binomial_within(ne_of(Reason::Holdout), reached, share, share);
            ChiSquare::of(crate::srm::Fit {
                chi2: 0.0,
                df: u32::from(reached > 0),
                p_value: p,
                method,
            })
        }),
        unit: "unit".to_string(),
        clusters: None,
        clusters_outside_coverage: 0,
        note: None,
    };
    if let Some(attr) = &e.cluster {
        cluster_level(e, attr, &mut srm);
    }
    ExperimentReport {
        key: cfg.key.clone(),
        strategy: cfg.strategy.to_string(),
        enabled: cfg.enabled,
        coverage_bp: cfg.coverage_bp,
        layer: cfg.layer.as_ref().map(|s| LayerSliceReport {
            name: s.layer.clone(),
            start: s.start,
            end: s.end,
        }),
        eligible,
        enrolled,
        not_enrolled,
        variants,
        srm,
    }
}

/// Replaces the unit-level tests of an experiment randomised by attribute `attr` with tests
/// at the level that is randomised: one count per distinct value (per cluster; for a
/// switchback, per region in the one window of the fixed clock). Never a unit-level verdict:
/// units of one cluster are not independent draws.
fn cluster_level(e: &ExpPlan<'_>, attr: &str, srm: &mut SrmReport) {
    let cfg = e.config;
    srm.unit = attr.to_string();
    let not_applicable = |srm: &mut SrmReport, why: String| {
        srm.split = ChiSquare::not_applicable();
        srm.coverage = ChiSquare::not_applicable();
        srm.note = Some(format!("not applicable: randomised by {attr}; {why}"));
    };
    if e.nv > 126 {
        return not_applicable(srm, "more than 126 variants".into());
    }
    let map = e.clusters.lock().unwrap_or_else(|p| p.into_inner());
    let mut per_variant = vec![0u64; e.nv];
    let (mut declined, mut mixed) = (0u64, 0u64);
    for &bits in map.values() {
        if bits.count_ones() != 1 {
            mixed += 1;
        } else if bits == CLUSTER_DECLINED {
            declined += 1;
        } else {
            per_variant[bits.trailing_zeros() as usize] += 1;
        }
    }
    drop(map);
    if mixed > 0 {
        return not_applicable(
            srm,
            format!("{mixed} value{} of {attr} had units in different variants (or in and out of coverage), so {attr} alone is not the unit of randomisation", if mixed == 1 { "" } else { "s" }),
        );
    }
    let total_w: f64 = cfg.variants.iter().map(|v| f64::from(v.weight)).sum();
    let weights: Vec<f64> = cfg
        .variants
        .iter()
        .map(|v| f64::from(v.weight) / total_w.max(1.0))
        .collect();
    srm.split = goodness_of_fit(&per_variant, &weights);
    let enrolled: u64 = per_variant.iter().sum();
    let nominal = f64::from(cfg.coverage_bp) / 10_000.0;
    let floored = crate::srm::range_shares(&cfg.weights(), cfg.coverage_bp)
        .map_or(nominal, |r| r.iter().sum());
    let (p, method) = crate::srm::binomial_within(
        enrolled,
        enrolled + declined,
        floored.min(nominal),
        floored.max(nominal),
    );
    srm.coverage = ChiSquare::of(crate::srm::Fit {
        chi2: 0.0,
        df: u32::from(enrolled + declined > 0),
        p_value: p,
        method,
    });
    srm.clusters = Some(per_variant);
    srm.clusters_outside_coverage = declined;
    srm.note = Some(format!(
        "tested per value of {attr} (the strategy declares it randomises by {attr}): {} clusters",
        enrolled + declined
    ));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::simulate::{SyntheticSpec, UnitSource};
    use crate::Sdk;

    #[test]
    fn reason_discriminants_follow_reason_all() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r}");
        }
    }

    #[test]
    fn counts_match_assign_one_by_one() {
        let sdk = Sdk::from_toml_str(
            r#"
            [[experiments]]
            key = "e"
            coverage = 0.5
            variants = [ { name = "a", weight = 1 }, { name = "b", weight = 3 } ]
            overrides = { "unit-3" = "a" }
            targeting = { country = ["US"] }
            "#,
        )
        .unwrap();
        let snap = sdk.snapshot();
        let spec = SyntheticSpec::new(5000).with_attribute("country=US:3,CA:1".parse().unwrap());
        let opts = SimulateOptions {
            chunk_units: 777,
            now_ms: Some(0),
            ..SimulateOptions::default()
        };
        let report = run(&snap, UnitSource::synthetic(spec.clone()), &opts).unwrap();
        let e = report.experiment("e").unwrap();

        let mut want = std::collections::BTreeMap::new();
        let mut id = String::new();
        for i in 0..5000 {
            spec.write_id(i, &mut id);
            let attrs = [crate::Attribute::new(
                "country",
                spec.attributes[0].pick(&id),
            )];
            let a = snap.assign("e", &Unit::new(&id).with_attributes(&attrs));
            *want
                .entry((a.variant_name().unwrap_or("-"), a.reason.as_str()))
                .or_insert(0u64) += 1;
        }
        let get = |k: (&str, &str)| want.get(&k).copied().unwrap_or(0);
        assert_eq!(e.variants[0].assigned, get(("a", "assigned")));
        assert_eq!(e.variants[1].assigned, get(("b", "assigned")));
        assert_eq!(e.variants[0].overridden, get(("a", "override")));
        assert_eq!(
            e.not_enrolled(Reason::NotTargeted),
            get(("-", "not_targeted"))
        );
        assert_eq!(
            e.not_enrolled(Reason::OutsideCoverage),
            get(("-", "outside_coverage"))
        );
        assert_eq!(
            e.eligible,
            5000 - get(("-", "not_targeted")) - get(("a", "override"))
        );
        assert!((e.variants[1].expected_share - 0.375).abs() < 1e-12);
        assert_eq!(report.independence.len(), 0);
    }

    #[test]
    fn unknown_experiment_is_an_error_naming_the_known_ones() {
        let sdk =
            Sdk::from_toml_str("[[experiments]]\nkey=\"e\"\nvariants=[{name=\"a\",weight=1}]\n")
                .unwrap();
        let opts = SimulateOptions {
            experiments: vec!["nope".into()],
            ..SimulateOptions::default()
        };
        let err = run(
            &sdk.snapshot(),
            UnitSource::synthetic(SyntheticSpec::new(1)),
            &opts,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "experiment \"nope\" is not in the configuration; known experiments: e"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod accounting_tests {
    use super::*;
    use crate::simulate::{InputFormat, SimulateError, UnitSource};
    use crate::Sdk;

    fn sdk() -> Sdk {
        Sdk::from_toml_str("[[experiments]]\nkey=\"e\"\nvariants=[{name=\"a\",weight=1}]\n")
            .unwrap()
    }

    fn csv(bytes: &'static [u8]) -> UnitSource {
        UnitSource::from_reader(
            "units.csv",
            bytes,
            InputFormat::Csv {
                id_column: "id".into(),
            },
        )
    }

    #[test]
    fn no_units_is_an_error_unless_allowed() {
        // Before: an empty input gave a report of 0 units with "SRM ok, p = 1".
        let opts = SimulateOptions {
            now_ms: Some(0),
            skip_bad_lines: true,
            ..SimulateOptions::default()
        };
        for (input, detail) in [
            (&b""[..], "it has no data rows"),
            (&b"id,country\n"[..], "it has no data rows"),
            (
                &b"id,country\n,US\nu2\n"[..],
                "all 2 rows were malformed and skipped",
            ),
        ] {
            let e = run(&sdk().snapshot(), csv(input), &opts).unwrap_err();
            assert!(matches!(e, SimulateError::NoUnits { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.starts_with("no units read from units.csv ("), "{msg}");
            assert!(
                msg.contains(detail) && msg.contains("--allow-empty"),
                "{msg}"
            );
        }
        let allow = SimulateOptions {
            allow_empty: true,
            ..opts
        };
        let r = run(&sdk().snapshot(), csv(b"id,country\n"), &allow).unwrap();
        assert_eq!((r.units, r.rows_read), (0, 0));
    }

    #[test]
    fn rows_read_is_units_plus_skipped() {
        let opts = SimulateOptions {
            now_ms: Some(0),
            skip_bad_lines: true,
            chunk_units: 2,
            ..SimulateOptions::default()
        };
        let r = run(
            &sdk().snapshot(),
            csv(b"id,c\nu1,x\nu2,\"x\nu3,x\n\nu5,x\n"),
            &opts,
        )
        .unwrap();
        assert_eq!((r.rows_read, r.units, r.skipped_lines.count), (5, 3, 2));
        assert!(r.to_json().contains("\"rows_read\": 5"));
        assert!(r.to_table().contains("rows read 5 = units 3 + skipped 2"));
    }
}
