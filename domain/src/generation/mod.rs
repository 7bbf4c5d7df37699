//! Generation: the methods that turn a project's images into more training
//! data (augmentation) or clean them up (preprocessing), and the rules for
//! choosing them and their parameters.
//!
//! Everything here is pure. The pixel work lives in the workers
//! (`tessera_workers::imaging`), which dispatch on the method ids of this
//! catalog and read the parameters sampled here.
//!
//! **Determinism:** the parameters of one output image depend only on the
//! task's seed, the output's index within the task and the method id
//! ([`sample`]). A seed recorded in the task's events therefore replays to the
//! same parameters, and, through [`SampledMethod::pixel_seed`], to the same
//! pixels.

mod methods;
pub mod rng;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::convert::whole_i64;
use crate::error::DomainError;
pub use methods::{MethodKind, MethodSpec, ParamSpec, ParamType, RETIRED};
pub use rng::SplitMix64;

/// The grayscale preprocessing method: choosing it narrows the plan.
pub const GRAYSCALE: &str = "PRE-001";
/// What stays of a preprocessing plan once grayscale is chosen: colour
/// normalisation means nothing for a gray image.
pub const WITH_GRAYSCALE: &[&str] = &["PRE-000", "PRE-001", "PRE-009"];

/// Every method a user can choose, augmentation first, each kind in id order.
pub fn catalog() -> &'static [MethodSpec] {
    methods::CATALOG
}

/// The methods of one kind, in catalog order.
pub fn of_kind(kind: MethodKind) -> impl Iterator<Item = &'static MethodSpec> {
    catalog().iter().filter(move |m| m.kind == kind)
}

/// The method with this id, if it is in the catalog (retired ids are not).
pub fn find(id: &str) -> Option<&'static MethodSpec> {
    catalog().iter().find(|m| m.id == id)
}

/// Why an id is refused, when it names a retired method.
pub fn retired(id: &str) -> Option<&'static str> {
    RETIRED.iter().find(|(r, _)| *r == id).map(|(_, why)| *why)
}

/// Checks the method ids of a generation request: each exists, is not
/// retired, is listed once, and all share one kind. Returns the methods in
/// the request's order (empty for an empty list, which preprocessing reads as
/// "auto").
pub fn validate_method_ids<S: AsRef<str>>(
    ids: &[S],
) -> Result<Vec<&'static MethodSpec>, DomainError> {
    let mut seen = HashSet::new();
    let mut out: Vec<&'static MethodSpec> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = id.as_ref();
        if let Some(why) = retired(id) {
            return Err(DomainError::Invalid(why.to_owned()));
        }
        let Some(spec) = find(id) else {
            return Err(DomainError::Invalid(format!(
                "unknown method id {id:?}; generate/list_method lists the valid ones"
            )));
        };
        if !seen.insert(spec.id) {
            return Err(DomainError::Invalid(format!(
                "method {id} is listed more than once"
            )));
        }
        if let Some(first) = out.first() {
            if first.kind != spec.kind {
                return Err(DomainError::Invalid(format!(
                    "ls_method_id mixes augmentation and preprocessing ({} and {}); choose methods of one kind",
                    first.id, spec.id
                )));
            }
        }
        out.push(spec);
    }
    Ok(out)
}

/// The kind a validated, non-empty selection has.
pub fn kind_of(methods: &[&'static MethodSpec]) -> Option<MethodKind> {
    methods.first().map(|m| m.kind)
}

/// The preprocessing plan for a selection, in catalog (= run) order.
///
/// No methods ("auto") means every preprocessing method but grayscale. With
/// grayscale chosen, only rotate_exif, grayscale and high_resolution of the
/// selection are kept.
pub fn preprocessing_plan(
    chosen: &[&'static MethodSpec],
) -> Result<Vec<&'static MethodSpec>, DomainError> {
    if let Some(aug) = chosen.iter().find(|m| m.kind != MethodKind::Preprocess) {
        return Err(DomainError::Invalid(format!(
            "{} is an augmentation method, not a preprocessing one",
            aug.id
        )));
    }
    let plan = if chosen.is_empty() {
        of_kind(MethodKind::Preprocess)
            .filter(|m| m.id != GRAYSCALE)
            .collect()
    } else {
        let gray = chosen.iter().any(|m| m.id == GRAYSCALE);
        of_kind(MethodKind::Preprocess)
            .filter(|m| chosen.iter().any(|c| c.id == m.id))
            .filter(|m| !gray || WITH_GRAYSCALE.contains(&m.id))
            .collect()
    };
    Ok(plan)
}

/// A parameter value: what expert mode fixes and what sampling produces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl ParamValue {
    pub fn as_f64(self) -> f64 {
        match self {
            ParamValue::Bool(b) => f64::from(u8::from(b)),
            ParamValue::Int(i) => i as f64,
            ParamValue::Float(f) => f,
        }
    }
}

/// The parameters of one method, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Params(pub BTreeMap<String, ParamValue>);

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Adds or replaces a value (builder style, handy in tests and tools).
    pub fn with(mut self, name: &str, value: ParamValue) -> Params {
        self.0.insert(name.to_owned(), value);
        self
    }

    pub fn get(&self, name: &str) -> Option<ParamValue> {
        self.0.get(name).copied()
    }

    /// The value as a float (ints and bools convert).
    pub fn float(&self, name: &str) -> Option<f64> {
        self.get(name).map(ParamValue::as_f64)
    }

    /// The value as an integer (a float must be integral).
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.get(name)? {
            ParamValue::Int(i) => Some(i),
            ParamValue::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(whole_i64(f)),
            ParamValue::Float(_) => None,
            ParamValue::Bool(b) => Some(i64::from(b)),
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.get(name)? {
            ParamValue::Bool(b) => Some(b),
            ParamValue::Int(i) => Some(i != 0),
            ParamValue::Float(f) => Some(f != 0.0),
        }
    }
}

/// Expert-mode overrides as a request carries them: method id → parameter
/// name → JSON value.
pub type RawOverrides = HashMap<String, HashMap<String, serde_json::Value>>;

/// Validated expert-mode overrides: method id → fixed parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Overrides(pub BTreeMap<String, Params>);

impl Overrides {
    pub fn for_method(&self, id: &str) -> Option<&Params> {
        self.0.get(id)
    }
}

/// Checks expert-mode overrides against the chosen methods: every method id
/// is among them, every parameter exists, has the right type and lies within
/// the method's bounds.
pub fn validate_overrides(
    chosen: &[&'static MethodSpec],
    raw: &RawOverrides,
) -> Result<Overrides, DomainError> {
    let mut out = BTreeMap::new();
    for (method_id, values) in raw {
        let Some(spec) = find(method_id) else {
            return Err(DomainError::Invalid(format!(
                "expert-mode parameters for unknown method id {method_id:?}"
            )));
        };
        if !chosen.iter().any(|c| c.id == spec.id) {
            return Err(DomainError::Invalid(format!(
                "expert-mode parameters for {method_id}, which is not among the chosen methods"
            )));
        }
        let mut params = Params::new();
        for (name, value) in values {
            let Some(p) = spec.param(name) else {
                let known: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                return Err(DomainError::Invalid(if known.is_empty() {
                    format!("{method_id} ({}) has no parameters", spec.name)
                } else {
                    format!(
                        "{method_id} ({}) has no parameter {name:?}; it has {}",
                        spec.name,
                        known.join(", ")
                    )
                }));
            };
            params.0.insert(name.clone(), check_value(spec, p, value)?);
        }
        out.insert(spec.id.to_owned(), params);
    }
    Ok(Overrides(out))
}

fn check_value(
    spec: &MethodSpec,
    p: &ParamSpec,
    value: &serde_json::Value,
) -> Result<ParamValue, DomainError> {
    let where_ = || format!("{} ({}) parameter {}", spec.id, spec.name, p.name);
    let out_of_range = |shown: String| {
        DomainError::Invalid(format!(
            "{} must be between {} and {}, not {shown}",
            where_(),
            show_bound(p, p.min),
            show_bound(p, p.max)
        ))
    };
    match p.ty {
        ParamType::Bool => value
            .as_bool()
            .map(ParamValue::Bool)
            .ok_or_else(|| DomainError::Invalid(format!("{} must be true or false", where_()))),
        ParamType::Int => {
            let i = value
                .as_i64()
                .or_else(|| {
                    value
                        .as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(whole_i64)
                })
                .ok_or_else(|| {
                    DomainError::Invalid(format!("{} must be an integer, not {value}", where_()))
                })?;
            if (i as f64) < p.min || (i as f64) > p.max {
                return Err(out_of_range(i.to_string()));
            }
            if p.odd && i % 2 == 0 {
                return Err(DomainError::Invalid(format!(
                    "{} must be odd, not {i}",
                    where_()
                )));
            }
            Ok(ParamValue::Int(i))
        }
        ParamType::Float => {
            let f = value.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                DomainError::Invalid(format!("{} must be a number, not {value}", where_()))
            })?;
            if f < p.min || f > p.max {
                return Err(out_of_range(f.to_string()));
            }
            Ok(ParamValue::Float(f))
        }
    }
}

fn show_bound(p: &ParamSpec, v: f64) -> String {
    match p.ty {
        ParamType::Int => whole_i64(v).to_string(),
        _ => v.to_string(),
    }
}

/// One method with the parameters it runs with on one output image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledMethod {
    pub method_id: String,
    pub params: Params,
    /// Seeds the method's own randomness (noise), independent of the
    /// parameters so that fixing a parameter does not change the noise.
    pub pixel_seed: u64,
}

impl SampledMethod {
    /// The random numbers the method may draw while working on pixels.
    pub fn pixel_rng(&self) -> SplitMix64 {
        SplitMix64::new(self.pixel_seed)
    }
}

/// Domain separation for the independent random streams of one image.
const STREAM_PARAMS: u64 = 0x5041_5241_4D53; // "PARAMS"
const STREAM_PIXELS: u64 = 0x5049_5845_4C53; // "PIXELS"
const STREAM_CHOICE: u64 = 0x4348_4F49_4345; // "CHOICE"

fn image_key(seed: u64, image_index: u64, salt: u64) -> u64 {
    let k = rng::mix64(seed ^ rng::mix64(image_index.wrapping_add(0x1234_5678_9ABC_DEF1)));
    rng::mix64(k ^ salt)
}

/// Samples a method's parameters for one output image.
///
/// `image_index` numbers the task's output images (for several outputs per
/// source: `source_index * num_aug_p_img + n`). Every parameter is drawn, in
/// catalog order, whether or not it is fixed, so fixing one parameter leaves
/// the others' values unchanged. Ints are uniform over the (odd, where
/// required) integers of the default range, floats uniform over it, bools a
/// fair coin when the range is 0–1.
pub fn sample(
    spec: &MethodSpec,
    seed: u64,
    image_index: u64,
    overrides: Option<&Params>,
) -> SampledMethod {
    let method = rng::hash_str(spec.id);
    let mut r = SplitMix64::new(image_key(seed, image_index, method ^ STREAM_PARAMS));
    let mut params = Params::new();
    for p in spec.params {
        let (lo, hi) = p.default_range;
        let drawn = match p.ty {
            ParamType::Float => ParamValue::Float(r.range_f64(lo, hi)),
            ParamType::Int if p.odd => {
                let first = odd_at_or_above(whole_i64(lo.ceil()));
                let steps = ((whole_i64(hi.floor()) - first) / 2).max(0);
                ParamValue::Int(first + 2 * r.range_i64(0, steps))
            }
            ParamType::Int => {
                ParamValue::Int(r.range_i64(whole_i64(lo.ceil()), whole_i64(hi.floor())))
            }
            ParamType::Bool => {
                let coin = r.next_u64() & 1 == 1;
                ParamValue::Bool(if lo == hi { lo != 0.0 } else { coin })
            }
        };
        let value = overrides.and_then(|o| o.get(p.name)).unwrap_or(drawn);
        params.0.insert(p.name.to_owned(), value);
    }
    SampledMethod {
        method_id: spec.id.to_owned(),
        params,
        pixel_seed: image_key(seed, image_index, method ^ STREAM_PIXELS),
    }
}

fn odd_at_or_above(i: i64) -> i64 {
    if i % 2 == 0 {
        i + 1
    } else {
        i
    }
}

/// Picks the augmentation for one output image among the chosen methods:
/// each output gets one method, drawn with the task's seed.
pub fn choose_augmentation(
    chosen: &[&'static MethodSpec],
    seed: u64,
    image_index: u64,
) -> Option<&'static MethodSpec> {
    let last = i64::try_from(chosen.len()).ok()?.checked_sub(1)?;
    let mut r = SplitMix64::new(image_key(seed, image_index, STREAM_CHOICE));
    let i = usize::try_from(r.range_i64(0, last)).ok()?;
    chosen.get(i).copied()
}

/// The steps that make one output image: one chosen augmentation, or the
/// whole preprocessing plan, each with its sampled parameters.
pub fn plan_image(
    kind: MethodKind,
    methods: &[&'static MethodSpec],
    seed: u64,
    image_index: u64,
    overrides: &Overrides,
) -> Vec<SampledMethod> {
    let one;
    let steps: &[&'static MethodSpec] = match kind {
        MethodKind::Augment => {
            one = choose_augmentation(methods, seed, image_index);
            one.as_slice()
        }
        MethodKind::Preprocess => methods,
    };
    steps
        .iter()
        .map(|m| sample(m, seed, image_index, overrides.for_method(m.id)))
        .collect()
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    fn ids(methods: &[&MethodSpec]) -> Vec<&'static str> {
        methods.iter().map(|m| m.id).collect()
    }

    #[test]
    fn catalog_has_every_method_once() {
        let all: Vec<&str> = catalog().iter().map(|m| m.id).collect();
        let mut expected: Vec<String> = (0..=17).map(|i| format!("AUG-{i:03}")).collect();
        expected.extend((0..=9).filter(|i| *i != 7).map(|i| format!("PRE-{i:03}")));
        assert_eq!(all, expected);
        let names: HashSet<&str> = catalog().iter().map(|m| m.name).collect();
        assert_eq!(names.len(), catalog().len());
        assert_eq!(find("AUG-000").unwrap().name, "random_rotate");
        assert_eq!(find("PRE-009").unwrap().name, "high_resolution");
        assert!(find("PRE-007").is_none());
    }

    #[test]
    fn parameter_specs_are_consistent() {
        for m in catalog() {
            assert_eq!(m.kind == MethodKind::Augment, m.id.starts_with("AUG-"));
            for p in m.params {
                let (lo, hi) = p.default_range;
                assert!(
                    p.min <= lo && lo <= hi && hi <= p.max,
                    "{} {}",
                    m.id,
                    p.name
                );
                if p.ty == ParamType::Int {
                    assert_eq!(p.min.fract(), 0.0);
                    assert_eq!(p.max.fract(), 0.0);
                }
                if p.odd {
                    assert_eq!(whole_i64(p.min) % 2, 1);
                }
            }
        }
    }

    #[test]
    fn reference_ranges() {
        let p = |id: &str, name: &str| find(id).unwrap().param(name).unwrap().default_range;
        assert_eq!(p("AUG-000", "degrees"), (-20.0, 20.0));
        assert_eq!(p("AUG-001", "scale"), (0.5, 2.0));
        assert_eq!(p("AUG-002", "translate_x"), (-0.2, 0.2));
        assert_eq!(p("AUG-005", "width"), (512.0, 512.0));
        assert_eq!(p("AUG-007", "area"), (0.02, 0.33));
        assert_eq!(p("AUG-007", "aspect"), (0.3, 3.3));
        assert_eq!(p("AUG-008", "std"), (0.1, 0.1));
        assert_eq!(p("AUG-009", "kernel_size"), (3.0, 27.0));
        assert_eq!(p("AUG-009", "sigma"), (1.0, 10.0));
        assert_eq!(p("AUG-010", "factor"), (0.3, 0.7));
        assert_eq!(p("AUG-011", "factor"), (0.75, 1.5));
        assert_eq!(p("AUG-012", "shift"), (-0.5, 0.5));
        assert_eq!(p("AUG-013", "factor"), (0.1, 2.0));
        assert_eq!(p("AUG-014", "factor"), (0.5, 1.5));
        assert_eq!(p("AUG-017", "factor"), (2.0, 2.0));
    }

    #[test]
    fn serializes_for_list_method() {
        let v = serde_json::to_value(find("AUG-009").unwrap()).unwrap();
        assert_eq!(v["method_id"], "AUG-009");
        assert_eq!(v["method_name"], "random_gaussian_blur");
        assert_eq!(v["kind"], "AUGMENT");
        assert_eq!(v["uses_reference"], false);
        let k = &v["parameters"][0];
        assert_eq!(k["name"], "kernel_size");
        assert_eq!(k["type"], "int");
        assert_eq!(k["min"], json!(3));
        assert_eq!(k["max"], json!(27));
        assert_eq!(k["default_range"], json!([3, 27]));
        assert_eq!(k["odd"], true);
        let s = &v["parameters"][1];
        assert_eq!(s["type"], "float");
        assert_eq!(s["default_range"], json!([1.0, 10.0]));
        let pre = serde_json::to_value(find("PRE-009").unwrap()).unwrap();
        assert_eq!(pre["kind"], "PREPROCESS");
        assert_eq!(pre["uses_reference"], true);
        assert_eq!(pre["parameters"], json!([]));
    }

    #[test]
    fn method_ids_must_exist_and_share_a_kind() {
        assert_eq!(
            ids(&validate_method_ids(&["AUG-003", "AUG-001"]).unwrap()),
            ["AUG-003", "AUG-001"]
        );
        assert!(validate_method_ids::<&str>(&[]).unwrap().is_empty());
        let err = |ids: &[&str]| match validate_method_ids(ids) {
            Err(DomainError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(err(&["AUG-099"]).contains("unknown method id \"AUG-099\""));
        assert!(err(&["PRE-007"]).contains("retired"));
        assert!(err(&["AUG-001", "PRE-002"]).contains("mixes augmentation and preprocessing"));
        assert!(err(&["AUG-001", "AUG-001"]).contains("more than once"));
        assert!(err(&["aug-001"]).contains("unknown"));
    }

    #[test]
    fn auto_preprocessing_runs_all_but_grayscale() {
        let plan = preprocessing_plan(&[]).unwrap();
        assert_eq!(
            ids(&plan),
            [
                "PRE-000", "PRE-002", "PRE-003", "PRE-004", "PRE-005", "PRE-006", "PRE-008",
                "PRE-009"
            ]
        );
    }

    #[test]
    fn grayscale_keeps_only_orientation_and_resize() {
        let chosen =
            validate_method_ids(&["PRE-009", "PRE-002", "PRE-001", "PRE-000", "PRE-005"]).unwrap();
        assert_eq!(
            ids(&preprocessing_plan(&chosen).unwrap()),
            ["PRE-000", "PRE-001", "PRE-009"]
        );
        let chosen = validate_method_ids(&["PRE-001"]).unwrap();
        assert_eq!(ids(&preprocessing_plan(&chosen).unwrap()), ["PRE-001"]);
        // Without grayscale the selection is kept, in run order.
        let chosen = validate_method_ids(&["PRE-008", "PRE-002"]).unwrap();
        assert_eq!(
            ids(&preprocessing_plan(&chosen).unwrap()),
            ["PRE-002", "PRE-008"]
        );
        let aug = validate_method_ids(&["AUG-001"]).unwrap();
        assert!(preprocessing_plan(&aug).is_err());
    }

    fn raw(method: &str, entries: &[(&str, serde_json::Value)]) -> RawOverrides {
        let mut inner = HashMap::new();
        for (k, v) in entries {
            inner.insert((*k).to_owned(), v.clone());
        }
        HashMap::from([(method.to_owned(), inner)])
    }

    #[test]
    fn overrides_are_checked() {
        let chosen = validate_method_ids(&["AUG-000", "AUG-009", "AUG-003"]).unwrap();
        let ok = validate_overrides(
            &chosen,
            &raw("AUG-009", &[("kernel_size", json!(5)), ("sigma", json!(2))]),
        )
        .unwrap();
        let p = ok.for_method("AUG-009").unwrap();
        assert_eq!(p.int("kernel_size"), Some(5));
        assert_eq!(p.float("sigma"), Some(2.0));
        // An integral float is accepted for an int.
        assert!(
            validate_overrides(&chosen, &raw("AUG-009", &[("kernel_size", json!(7.0))])).is_ok()
        );

        let err = |r: RawOverrides| match validate_overrides(&chosen, &r) {
            Err(DomainError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert!(err(raw("AUG-000", &[("angle", json!(3))]))
            .contains("no parameter \"angle\"; it has degrees"));
        assert!(err(raw("AUG-000", &[("degrees", json!("3"))])).contains("must be a number"));
        assert!(err(raw("AUG-000", &[("degrees", json!(181))])).contains("between -180 and 180"));
        assert!(err(raw("AUG-009", &[("kernel_size", json!(4))])).contains("must be odd"));
        assert!(err(raw("AUG-009", &[("kernel_size", json!(3.5))])).contains("must be an integer"));
        assert!(err(raw("AUG-009", &[("kernel_size", json!(29))])).contains("between 3 and 27"));
        assert!(err(raw("AUG-003", &[("p", json!(1))])).contains("has no parameters"));
        assert!(err(raw("AUG-001", &[("scale", json!(1))])).contains("not among the chosen"));
        assert!(err(raw("XYZ", &[])).contains("unknown method"));
    }

    #[test]
    fn bool_parameters_are_checked() {
        static P: ParamSpec = ParamSpec {
            name: "flag",
            ty: ParamType::Bool,
            min: 0.0,
            max: 1.0,
            default_range: (0.0, 1.0),
            odd: false,
            description: "",
        };
        let spec = find("AUG-003").unwrap();
        assert_eq!(
            check_value(spec, &P, &json!(true)).unwrap(),
            ParamValue::Bool(true)
        );
        assert!(check_value(spec, &P, &json!(1)).is_err());
    }

    #[test]
    fn sampling_is_deterministic_and_in_range() {
        for spec in catalog() {
            for i in 0..50 {
                let a = sample(spec, 42, i, None);
                assert_eq!(a, sample(spec, 42, i, None));
                for p in spec.params {
                    let v = a.params.float(p.name).unwrap();
                    assert!(
                        p.default_range.0 <= v && v <= p.default_range.1,
                        "{} {}",
                        spec.id,
                        p.name
                    );
                    if p.odd {
                        assert_eq!(a.params.int(p.name).unwrap() % 2, 1);
                    }
                }
            }
        }
        let rot = find("AUG-000").unwrap();
        assert_ne!(
            sample(rot, 42, 0, None).params,
            sample(rot, 43, 0, None).params
        );
        assert_ne!(
            sample(rot, 42, 0, None).params,
            sample(rot, 42, 1, None).params
        );
        assert_ne!(
            sample(rot, 42, 0, None).pixel_seed,
            sample(rot, 42, 1, None).pixel_seed
        );
    }

    #[test]
    fn fixing_one_parameter_keeps_the_others() {
        let blur = find("AUG-009").unwrap();
        let free = sample(blur, 7, 3, None);
        let fixed = Params::new().with("kernel_size", ParamValue::Int(9));
        let s = sample(blur, 7, 3, Some(&fixed));
        assert_eq!(s.params.int("kernel_size"), Some(9));
        assert_eq!(s.params.float("sigma"), free.params.float("sigma"));
        assert_eq!(s.pixel_seed, free.pixel_seed);
    }

    #[test]
    fn odd_kernels_cover_the_range() {
        let blur = find("AUG-009").unwrap();
        let sizes: HashSet<i64> = (0..2000)
            .map(|i| sample(blur, 1, i, None).params.int("kernel_size").unwrap())
            .collect();
        assert_eq!(sizes, (3..=27).step_by(2).collect());
    }

    #[test]
    fn augmentation_picks_one_method_per_image() {
        let chosen = validate_method_ids(&["AUG-003", "AUG-004", "AUG-011"]).unwrap();
        let picks: HashSet<&str> = (0..100)
            .map(|i| choose_augmentation(&chosen, 9, i).unwrap().id)
            .collect();
        assert_eq!(picks.len(), 3);
        assert_eq!(
            choose_augmentation(&chosen, 9, 5),
            choose_augmentation(&chosen, 9, 5)
        );
        assert!(choose_augmentation(&[], 9, 5).is_none());
        let steps = plan_image(MethodKind::Augment, &chosen, 9, 5, &Overrides::default());
        assert_eq!(steps.len(), 1);
        let plan = preprocessing_plan(&[]).unwrap();
        let steps = plan_image(MethodKind::Preprocess, &plan, 9, 5, &Overrides::default());
        assert_eq!(steps.len(), plan.len());
    }

    #[test]
    fn sampled_methods_round_trip_through_json() {
        let s = sample(find("AUG-009").unwrap(), 5, 5, None);
        let text = serde_json::to_string(&s).unwrap();
        let back: SampledMethod = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }
}
