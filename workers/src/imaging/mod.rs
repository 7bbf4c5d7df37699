//! The pixel work of generation jobs: decode a source with limits, run the
//! methods of the catalog (`tessera_domain::generation`) over it, encode the
//! result. Pure: bytes in, bytes out, no I/O.
//!
//! Pixels travel as 8-bit RGB ([`RgbImage`]) through every method; the
//! source's container (PNG or JPEG) is kept for the output. Uncovered areas
//! (rotate, scale, translate) are filled with [`FILL`], black, as Kornia's
//! zero padding does.
//!
//! **Determinism:** a method's only randomness is the generator it is handed,
//! seeded from [`SampledMethod::pixel_seed`]; the encoders are
//! deterministic. The same steps over the same source give the same bytes.

pub mod buffers;
pub mod decode;
pub mod encode;
pub mod methods;
pub mod simd;

use image::metadata::Orientation;
use image::{Rgb, RgbImage};
use tessera_domain::generation::{self, MethodSpec, ParamType, Params, SampledMethod, SplitMix64};

pub use decode::{decode, probe, DecodeLimits, Decoded};
pub use encode::{encode, OutputFormat};

use methods::{color, filter, geometry, normalize, resize};

/// The colour of areas a geometric method uncovers.
pub const FILL: Rgb<u8> = Rgb([0, 0, 0]);
/// Largest side of any produced image.
pub const MAX_OUTPUT_SIDE: u32 = 16_384;
/// Most pixels of any produced image (300 MB as RGB).
pub const MAX_OUTPUT_PIXELS: u64 = 100_000_000;

/// What can go wrong with one image. Every variant is a property of the
/// input or the request, so retrying the same image does not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagingError {
    /// The header announces more pixels than allowed.
    #[error(
        "the image is {width}×{height} pixels, more than the {max_width}×{max_height} allowed"
    )]
    TooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    /// Decoding would need more memory than allowed.
    #[error("the image needs more memory than allowed: {0}")]
    Limits(String),
    /// Not a PNG or JPEG.
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// Truncated or damaged data.
    #[error("the image is corrupt or unreadable: {0}")]
    Corrupt(String),
    /// A method would produce an image beyond [`MAX_OUTPUT_SIDE`] /
    /// [`MAX_OUTPUT_PIXELS`].
    #[error("the result would be {width}×{height} pixels, more than allowed")]
    OutputTooLarge { width: u32, height: u32 },
    #[error("unknown method id {0:?}")]
    UnknownMethod(String),
    /// The method compares with a reference image and none was given.
    #[error("{0} needs a reference image")]
    MissingReference(String),
    #[error("{method_id}: parameter {name} {problem}")]
    BadParam {
        method_id: String,
        name: String,
        problem: String,
    },
    #[error("resizing failed: {0}")]
    Resize(String),
    #[error("encoding failed: {0}")]
    Encode(String),
}

/// Refuses output sizes beyond the limits, before anything is allocated.
pub fn check_output_size(width: u32, height: u32) -> Result<(), ImagingError> {
    if width > MAX_OUTPUT_SIDE
        || height > MAX_OUTPUT_SIDE
        || u64::from(width) * u64::from(height) > MAX_OUTPUT_PIXELS
    {
        return Err(ImagingError::OutputTooLarge { width, height });
    }
    Ok(())
}

/// What a method may need besides the image and its parameters.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The project's reference image for this method, if it uses one.
    pub reference: Option<&'a RgbImage>,
    /// The source's EXIF orientation, for PRE-000.
    pub orientation: Orientation,
}

impl Default for Context<'_> {
    fn default() -> Self {
        Context {
            reference: None,
            orientation: Orientation::NoTransforms,
        }
    }
}

/// Typed, bounds-checked access to a method's parameters.
struct Args<'a> {
    spec: &'static MethodSpec,
    params: &'a Params,
}

impl Args<'_> {
    fn bad(&self, name: &str, problem: String) -> ImagingError {
        ImagingError::BadParam {
            method_id: self.spec.id.to_owned(),
            name: name.to_owned(),
            problem,
        }
    }

    fn value(&self, name: &str) -> Result<f64, ImagingError> {
        let spec = self
            .spec
            .param(name)
            .ok_or_else(|| self.bad(name, "is not a parameter of this method".into()))?;
        let v = self
            .params
            .float(name)
            .ok_or_else(|| self.bad(name, "is missing".into()))?;
        if !(spec.min..=spec.max).contains(&v) {
            return Err(self.bad(name, format!("is {v}, outside {}..={}", spec.min, spec.max)));
        }
        if spec.ty == ParamType::Int && v.fract() != 0.0 {
            return Err(self.bad(name, format!("is {v}, not an integer")));
        }
        Ok(v)
    }

    fn float(&self, name: &str) -> Result<f32, ImagingError> {
        Ok(methods::to_f32(self.value(name)?))
    }

    /// Integer parameters are bounded by the catalog (all within u32).
    fn uint(&self, name: &str) -> Result<u32, ImagingError> {
        let v = self.value(name)?;
        if v < 0.0 || v > f64::from(u32::MAX) {
            return Err(self.bad(name, format!("is {v}, not a size")));
        }
        Ok(methods::clamp_to_u32(v, 0, u32::MAX))
    }
}

fn reference<'a>(spec: &MethodSpec, ctx: &Context<'a>) -> Result<&'a RgbImage, ImagingError> {
    ctx.reference
        .ok_or_else(|| ImagingError::MissingReference(format!("{} ({})", spec.id, spec.name)))
}

/// Runs one method of the catalog on `img`.
pub fn apply(
    method_id: &str,
    params: &Params,
    img: &RgbImage,
    ctx: &Context<'_>,
    rng: &mut SplitMix64,
) -> Result<RgbImage, ImagingError> {
    let spec =
        generation::find(method_id).ok_or_else(|| ImagingError::UnknownMethod(method_id.into()))?;
    let a = Args { spec, params };
    let out = match spec.id {
        "AUG-000" => geometry::rotate(img, a.float("degrees")?, FILL),
        "AUG-001" => geometry::scale(img, a.float("scale")?, FILL)?,
        "AUG-002" => {
            geometry::translate(img, a.float("translate_x")?, a.float("translate_y")?, FILL)
        }
        "AUG-003" => geometry::flip_horizontal(img),
        "AUG-004" => geometry::flip_vertical(img),
        "AUG-005" => geometry::crop(
            img,
            a.uint("width")?,
            a.uint("height")?,
            a.float("x")?,
            a.float("y")?,
        ),
        "AUG-006" => geometry::tile(img, a.uint("tile_size")?, a.float("position")?),
        "AUG-007" => geometry::erase(
            img,
            a.float("area")?,
            a.float("aspect")?,
            a.float("x")?,
            a.float("y")?,
            u8::try_from(a.uint("value")?).unwrap_or(u8::MAX),
        ),
        "AUG-008" => color::gaussian_noise(img, a.float("mean")?, a.float("std")?, rng),
        "AUG-009" => filter::gaussian_blur(img, a.uint("kernel_size")?, a.float("sigma")?),
        "AUG-010" => filter::sharpness(img, a.float("factor")?),
        "AUG-011" => color::brightness(img, a.float("factor")?),
        "AUG-012" => color::hue(img, a.float("shift")?),
        "AUG-013" => color::saturation(img, a.float("factor")?),
        "AUG-014" => color::contrast(img, a.float("factor")?),
        "AUG-015" => color::solarize(img, a.float("threshold")?, a.float("addition")?),
        "AUG-016" => color::posterize(img, u8::try_from(a.uint("bits")?).unwrap_or(8)),
        "AUG-017" => resize::super_resolution(img, a.uint("factor")?)?,
        "PRE-000" => geometry::orient(img, ctx.orientation),
        "PRE-001" => color::grayscale(img),
        "PRE-002" => normalize::normalize_brightness(img, reference(spec, ctx)?),
        "PRE-003" => normalize::normalize_hue(img, reference(spec, ctx)?),
        "PRE-004" => normalize::normalize_saturation(img, reference(spec, ctx)?),
        "PRE-005" => normalize::normalize_sharpness(img, reference(spec, ctx)?),
        "PRE-006" => normalize::normalize_contrast(img, reference(spec, ctx)?),
        "PRE-008" => normalize::equalize_histogram(img, a.float("low_contrast_fraction")?),
        "PRE-009" => resize::high_resolution(img, reference(spec, ctx)?)?,
        other => return Err(ImagingError::UnknownMethod(other.into())),
    };
    Ok(out)
}

/// Runs steps one after the other, each with its own generator (from its
/// `pixel_seed`) and its own reference image (`reference_for(method_id)`).
/// The orientation is consumed by PRE-000: later steps see upright pixels.
///
/// `img` is only read, so several outputs can start from one decoded
/// source; the images in between give their buffers back.
pub fn run_pipeline<'r>(
    steps: &[SampledMethod],
    img: &RgbImage,
    orientation: Orientation,
    reference_for: impl Fn(&str) -> Option<&'r RgbImage>,
) -> Result<RgbImage, ImagingError> {
    let mut current: Option<RgbImage> = None;
    let mut orientation = orientation;
    for step in steps {
        let ctx = Context {
            reference: reference_for(&step.method_id),
            orientation,
        };
        let mut rng = step.pixel_rng();
        let input = current.as_ref().unwrap_or(img);
        let next = apply(&step.method_id, &step.params, input, &ctx, &mut rng)?;
        if let Some(done) = current.replace(next) {
            buffers::give(done.into_raw());
        }
        if step.method_id == "PRE-000" {
            orientation = Orientation::NoTransforms;
        }
    }
    Ok(current.unwrap_or_else(|| methods::same_size(img, buffers::copy_of(img.as_raw()))))
}

/// One output image from a decoded source: run the steps, encode in the
/// source's container. The source is left as it is, for the next output.
pub fn render<'r>(
    source: &Decoded,
    steps: &[SampledMethod],
    reference_for: impl Fn(&str) -> Option<&'r RgbImage>,
) -> Result<Vec<u8>, ImagingError> {
    let out = run_pipeline(steps, &source.image, source.orientation, reference_for)?;
    let bytes = encode(&out, source.format)?;
    buffers::give(out.into_raw());
    Ok(bytes)
}

/// The low byte of `v`: test patterns that wrap around on purpose.
#[cfg(test)]
pub(crate) fn low_byte(v: u32) -> u8 {
    let [low, ..] = v.to_le_bytes();
    low
}

#[cfg(test)]
mod tests {

    use tessera_domain::generation::{catalog, find, sample, MethodKind, ParamValue};

    use super::*;

    fn texture(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                low_byte(x * 5 + y),
                low_byte(y * 7 + x * x),
                low_byte((x ^ y) * 3),
            ])
        })
    }

    #[test]
    fn every_method_runs() {
        let img = texture(48, 32);
        let reference = texture(40, 40);
        for spec in catalog() {
            for i in 0..3 {
                let step = sample(spec, 11, i, None);
                let ctx = Context {
                    reference: Some(&reference),
                    orientation: Orientation::Rotate90,
                };
                let out = apply(spec.id, &step.params, &img, &ctx, &mut step.pixel_rng())
                    .unwrap_or_else(|e| panic!("{}: {e}", spec.id));
                let expected = match spec.id {
                    "AUG-005" | "AUG-006" => (48, 32),
                    "AUG-017" => (96, 64),
                    "PRE-000" => (32, 48),
                    "PRE-009" => (40, 40),
                    _ => (48, 32),
                };
                assert_eq!(out.dimensions(), expected, "{}", spec.id);
            }
        }
    }

    #[test]
    fn methods_that_need_a_reference_say_so() {
        let img = texture(8, 8);
        for spec in catalog().iter().filter(|m| m.uses_reference) {
            let step = sample(spec, 1, 0, None);
            let err = apply(
                spec.id,
                &step.params,
                &img,
                &Context::default(),
                &mut step.pixel_rng(),
            )
            .unwrap_err();
            assert!(
                matches!(err, ImagingError::MissingReference(_)),
                "{}",
                spec.id
            );
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        let img = texture(8, 8);
        let mut rng = SplitMix64::new(0);
        let ctx = Context::default();
        assert_eq!(
            apply("AUG-999", &Params::new(), &img, &ctx, &mut rng),
            Err(ImagingError::UnknownMethod("AUG-999".into()))
        );
        let err = apply("AUG-000", &Params::new(), &img, &ctx, &mut rng).unwrap_err();
        assert!(err.to_string().contains("degrees is missing"), "{err}");
        let wild = Params::new().with("degrees", ParamValue::Float(1000.0));
        let err = apply("AUG-000", &wild, &img, &ctx, &mut rng).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }

    #[test]
    fn flip_through_the_dispatcher() {
        let img = texture(3, 2);
        let out = apply(
            "AUG-003",
            &Params::new(),
            &img,
            &Context::default(),
            &mut SplitMix64::new(0),
        )
        .unwrap();
        assert_eq!(out.get_pixel(0, 1), img.get_pixel(2, 1));
    }

    fn augment_bytes(seed: u64, method: &str) -> Vec<u8> {
        let source = encode(&texture(64, 48), OutputFormat::Png).unwrap();
        let step = sample(find(method).unwrap(), seed, 0, None);
        let decoded = decode(&source, &DecodeLimits::default()).unwrap();
        render(&decoded, &[step], |_| None).unwrap()
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        for method in ["AUG-000", "AUG-007", "AUG-008", "AUG-012"] {
            let a = augment_bytes(42, method);
            assert_eq!(a, augment_bytes(42, method), "{method}");
            assert_ne!(a, augment_bytes(43, method), "{method}");
        }
    }

    #[test]
    fn preprocessing_pipeline_runs_in_order() {
        let plan = generation::preprocessing_plan(&[]).unwrap();
        let steps: Vec<SampledMethod> = plan.iter().map(|m| sample(m, 5, 0, None)).collect();
        let img = texture(30, 20);
        let reference = texture(50, 40);
        let out = run_pipeline(&steps, &img, Orientation::Rotate90, |_| Some(&reference)).unwrap();
        assert_eq!(out.dimensions(), (50, 40));

        // Grayscale plan: orient, gray, resize.
        let chosen = generation::validate_method_ids(&["PRE-001", "PRE-000"]).unwrap();
        let plan = generation::preprocessing_plan(&chosen).unwrap();
        assert_eq!(generation::kind_of(&plan), Some(MethodKind::Preprocess));
        let steps: Vec<SampledMethod> = plan.iter().map(|m| sample(m, 5, 0, None)).collect();
        let out = run_pipeline(&steps, &texture(30, 20), Orientation::Rotate270, |_| None).unwrap();
        assert_eq!(out.dimensions(), (20, 30));
        assert!(out.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    }

    #[test]
    fn output_size_is_bounded() {
        assert!(check_output_size(16_384, 100).is_ok());
        assert!(check_output_size(16_385, 1).is_err());
        assert!(check_output_size(10_001, 10_000).is_err());
    }
}
