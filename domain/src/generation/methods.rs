//! The method catalog: every augmentation and preprocessing method a user can
//! choose, with its parameters. The API lists it (`generate/list_method`), the
//! generation command validates against it, and workers dispatch on its ids.
//!
//! Parameter conventions: colours and intensities are on the 0–1 range,
//! positions (`x`, `y`, `position`) are fractions of the free room so that any
//! value in 0–1 is valid for any image size, angles are in degrees with
//! positive values turning counter-clockwise.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use crate::convert::whole_i64;

/// Whether a method makes new training data or cleans up the source images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum MethodKind {
    Augment,
    Preprocess,
}

impl MethodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MethodKind::Augment => "AUGMENT",
            MethodKind::Preprocess => "PREPROCESS",
        }
    }
}

/// The type of a parameter's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    Float,
    Int,
    Bool,
}

/// One tunable parameter of a method.
///
/// `min`/`max` bound what expert mode accepts; `default_range` is what is
/// sampled, uniformly and per image, when the user leaves the parameter to
/// chance. A degenerate range (`lo == hi`) is a fixed default. Bools use 0/1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub min: f64,
    pub max: f64,
    pub default_range: (f64, f64),
    /// Only odd integers are allowed (kernel sizes).
    pub odd: bool,
    pub description: &'static str,
}

impl Serialize for ParamSpec {
    /// Ints are shown as integers and bools as booleans, so clients see
    /// `"min": 3` rather than `"min": 3.0`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ParamSpec", 7)?;
        s.serialize_field("name", self.name)?;
        s.serialize_field("type", &self.ty)?;
        match self.ty {
            ParamType::Float => {
                s.serialize_field("min", &self.min)?;
                s.serialize_field("max", &self.max)?;
                s.serialize_field(
                    "default_range",
                    &[self.default_range.0, self.default_range.1],
                )?;
            }
            ParamType::Int => {
                s.serialize_field("min", &whole_i64(self.min))?;
                s.serialize_field("max", &whole_i64(self.max))?;
                s.serialize_field(
                    "default_range",
                    &[
                        whole_i64(self.default_range.0),
                        whole_i64(self.default_range.1),
                    ],
                )?;
            }
            ParamType::Bool => {
                s.serialize_field("min", &(self.min != 0.0))?;
                s.serialize_field("max", &(self.max != 0.0))?;
                s.serialize_field(
                    "default_range",
                    &[self.default_range.0 != 0.0, self.default_range.1 != 0.0],
                )?;
            }
        }
        s.serialize_field("odd", &self.odd)?;
        s.serialize_field("description", self.description)?;
        s.end()
    }
}

/// One method of the catalog. Serializes with the `method_id` / `method_name`
/// field names that `generate/list_method` clients read, plus the details.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MethodSpec {
    #[serde(rename = "method_id")]
    pub id: &'static str,
    #[serde(rename = "method_name")]
    pub name: &'static str,
    pub kind: MethodKind,
    /// The method compares each image with a reference image of the project
    /// (the one with the median value of the method's metric, unless the
    /// user picked one).
    pub uses_reference: bool,
    pub description: &'static str,
    #[serde(rename = "parameters")]
    pub params: &'static [ParamSpec],
}

impl MethodSpec {
    pub fn param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// Ids that existed once and are refused now, with the reason shown to users.
pub const RETIRED: &[(&str, &str)] = &[(
    "PRE-007",
    "PRE-007 has been retired; normalize_sharpness (PRE-005) and normalize_contrast (PRE-006) cover it",
)];

const fn float(
    name: &'static str,
    min: f64,
    max: f64,
    lo: f64,
    hi: f64,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        ty: ParamType::Float,
        min,
        max,
        default_range: (lo, hi),
        odd: false,
        description,
    }
}

const fn int(
    name: &'static str,
    min: i64,
    max: i64,
    lo: i64,
    hi: i64,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        ty: ParamType::Int,
        min: min as f64,
        max: max as f64,
        default_range: (lo as f64, hi as f64),
        odd: false,
        description,
    }
}

const fn odd_int(
    name: &'static str,
    min: i64,
    max: i64,
    lo: i64,
    hi: i64,
    description: &'static str,
) -> ParamSpec {
    let mut p = int(name, min, max, lo, hi, description);
    p.odd = true;
    p
}

const fn augment(
    id: &'static str,
    name: &'static str,
    description: &'static str,
    params: &'static [ParamSpec],
) -> MethodSpec {
    MethodSpec {
        id,
        name,
        kind: MethodKind::Augment,
        uses_reference: false,
        description,
        params,
    }
}

const fn preprocess(
    id: &'static str,
    name: &'static str,
    uses_reference: bool,
    description: &'static str,
    params: &'static [ParamSpec],
) -> MethodSpec {
    MethodSpec {
        id,
        name,
        kind: MethodKind::Preprocess,
        uses_reference,
        description,
        params,
    }
}

const POSITION_X: ParamSpec = float(
    "x",
    0.0,
    1.0,
    0.0,
    1.0,
    "horizontal position: 0 = left edge, 1 = right edge",
);
const POSITION_Y: ParamSpec = float(
    "y",
    0.0,
    1.0,
    0.0,
    1.0,
    "vertical position: 0 = top edge, 1 = bottom edge",
);

/// The catalog, augmentation first, each kind in id order. Preprocessing runs
/// in this order too: orientation first, resizing last.
pub(super) static CATALOG: &[MethodSpec] = &[
    augment(
        "AUG-000",
        "random_rotate",
        "Rotates about the centre, keeping the size; uncovered corners are black.",
        &[float(
            "degrees",
            -180.0,
            180.0,
            -20.0,
            20.0,
            "angle in degrees, positive is counter-clockwise",
        )],
    ),
    augment(
        "AUG-001",
        "random_scale",
        "Zooms in (> 1) or out (< 1) about the centre, keeping the size; a zoomed-out image gets a black border.",
        &[float("scale", 0.1, 4.0, 0.5, 2.0, "zoom factor")],
    ),
    augment(
        "AUG-002",
        "random_translate",
        "Shifts the image, filling the uncovered band with black.",
        &[
            float(
                "translate_x",
                -0.5,
                0.5,
                -0.2,
                0.2,
                "shift as a fraction of the width, positive is to the right",
            ),
            float(
                "translate_y",
                -0.5,
                0.5,
                -0.2,
                0.2,
                "shift as a fraction of the height, positive is down",
            ),
        ],
    ),
    augment(
        "AUG-003",
        "random_horizontal_flip",
        "Mirrors the image left to right.",
        &[],
    ),
    augment(
        "AUG-004",
        "random_vertical_flip",
        "Mirrors the image top to bottom.",
        &[],
    ),
    augment(
        "AUG-005",
        "random_crop",
        "Cuts a window (512×512 unless fixed, clamped to the image) at a random position.",
        &[
            int("width", 1, 8000, 512, 512, "window width in pixels"),
            int("height", 1, 8000, 512, 512, "window height in pixels"),
            POSITION_X,
            POSITION_Y,
        ],
    ),
    augment(
        "AUG-006",
        "random_tile",
        "Cuts the image into a grid of square tiles and keeps one of them.",
        &[
            int("tile_size", 16, 8000, 512, 512, "tile side in pixels"),
            float(
                "position",
                0.0,
                1.0,
                0.0,
                1.0,
                "which tile, in reading order: 0 = first, 1 = last",
            ),
        ],
    ),
    augment(
        "AUG-007",
        "random_erase",
        "Blanks out a rectangle, so models learn to cope with occlusion.",
        &[
            float(
                "area",
                0.001,
                1.0,
                0.02,
                0.33,
                "rectangle area as a fraction of the image",
            ),
            float(
                "aspect",
                0.1,
                10.0,
                0.3,
                3.3,
                "rectangle height divided by its width",
            ),
            POSITION_X,
            POSITION_Y,
            int("value", 0, 255, 0, 0, "fill value of every channel"),
        ],
    ),
    augment(
        "AUG-008",
        "random_gaussian_noise",
        "Adds gaussian noise to every channel of every pixel.",
        &[
            float("mean", -0.5, 0.5, 0.0, 0.0, "noise mean, on the 0–1 range"),
            float(
                "std",
                0.0,
                1.0,
                0.1,
                0.1,
                "noise standard deviation, on the 0–1 range",
            ),
        ],
    ),
    augment(
        "AUG-009",
        "random_gaussian_blur",
        "Blurs with a gaussian kernel.",
        &[
            odd_int(
                "kernel_size",
                3,
                27,
                3,
                27,
                "kernel side in pixels (odd)",
            ),
            float("sigma", 0.1, 10.0, 1.0, 10.0, "gaussian standard deviation in pixels"),
        ],
    ),
    augment(
        "AUG-010",
        "random_sharpness",
        "Softens (< 1) or sharpens (> 1) edges, like PIL's ImageEnhance.Sharpness.",
        &[float(
            "factor",
            0.0,
            4.0,
            0.3,
            0.7,
            "0 = smoothed, 1 = unchanged, 2 = twice as sharp",
        )],
    ),
    augment(
        "AUG-011",
        "random_brightness",
        "Multiplies every channel by a factor.",
        &[float("factor", 0.0, 4.0, 0.75, 1.5, "1 = unchanged")],
    ),
    augment(
        "AUG-012",
        "random_hue",
        "Turns the hue around the colour circle.",
        &[float(
            "shift",
            -0.5,
            0.5,
            -0.5,
            0.5,
            "fraction of a full turn of the colour circle",
        )],
    ),
    augment(
        "AUG-013",
        "random_saturation",
        "Scales the colour saturation (0 = gray).",
        &[float("factor", 0.0, 4.0, 0.1, 2.0, "1 = unchanged")],
    ),
    augment(
        "AUG-014",
        "random_contrast",
        "Stretches (> 1) or flattens (< 1) values around the mean gray.",
        &[float("factor", 0.0, 4.0, 0.5, 1.5, "1 = unchanged, 0 = flat gray")],
    ),
    augment(
        "AUG-015",
        "random_solarize",
        "Adds an offset, then inverts every value at or above a threshold.",
        &[
            float(
                "threshold",
                0.0,
                1.0,
                0.4,
                0.6,
                "values at or above it are inverted, on the 0–1 range",
            ),
            float(
                "addition",
                -0.5,
                0.5,
                -0.1,
                0.1,
                "added to every value before thresholding, on the 0–1 range",
            ),
        ],
    ),
    augment(
        "AUG-016",
        "random_posterize",
        "Keeps only the high bits of every channel.",
        &[int("bits", 1, 8, 3, 7, "bits kept per channel (8 = unchanged)")],
    ),
    augment(
        "AUG-017",
        "super_resolution",
        "Upscales the image by an integer factor with a Lanczos filter.",
        &[int("factor", 2, 4, 2, 2, "upscale factor")],
    ),
    preprocess(
        "PRE-000",
        "rotate_exif",
        false,
        "Turns the pixels upright as the camera's EXIF orientation says; the tag is not written back.",
        &[],
    ),
    preprocess(
        "PRE-001",
        "grayscale",
        false,
        "Converts to gray (Rec. 601 luma), stored in all three channels.",
        &[],
    ),
    preprocess(
        "PRE-002",
        "normalize_brightness",
        true,
        "Scales brightness so the mean luma matches the reference image's.",
        &[],
    ),
    preprocess(
        "PRE-003",
        "normalize_hue",
        true,
        "Turns the hue so the mean hue matches the reference image's.",
        &[],
    ),
    preprocess(
        "PRE-004",
        "normalize_saturation",
        true,
        "Scales saturation so the mean saturation matches the reference image's.",
        &[],
    ),
    preprocess(
        "PRE-005",
        "normalize_sharpness",
        true,
        "Unsharp mask whose strength brings edge strength (mean absolute Laplacian) to the reference image's.",
        &[],
    ),
    preprocess(
        "PRE-006",
        "normalize_contrast",
        true,
        "Brings the luma spread to the reference image's: a sigmoid curve raises contrast, a linear squeeze lowers it.",
        &[],
    ),
    preprocess(
        "PRE-008",
        "equalize_histogram",
        false,
        "Equalizes each channel's histogram, only on low-contrast images.",
        &[float(
            "low_contrast_fraction",
            0.0,
            1.0,
            0.35,
            0.35,
            "an image is low-contrast when its 1st–99th percentile luma span is below this fraction of the full range",
        )],
    ),
    preprocess(
        "PRE-009",
        "high_resolution",
        true,
        "Resizes to the reference image's size with a Lanczos filter.",
        &[],
    ),
];
