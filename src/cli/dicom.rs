//! `lucent dicom ...`: file-level tools (decode to .npy, render to PNG/JPEG, dump attributes).
//! Thin wrappers over `preprocess` and `dicom::dump`; exit status 0 on success, 1 with a
//! message saying why when a file cannot be read or decoded.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::preprocess::{self, Format, RenderOptions, VoiFunction, Window};

#[derive(Subcommand)]
pub enum DicomCommand {
    /// Write the stored pixel values (before any LUT) as a NumPy .npy array.
    ///
    /// Shape (frames, rows, columns, samples); dtype u8/i8/u16/i16/u32/i32 from Bits Allocated
    /// and Pixel Representation. Colour comes out as RGB, PALETTE COLOR as stored indices.
    Decode(DecodeArgs),
    /// Render one frame as a viewer shows it by default (PNG, or JPEG for a .jpg/.jpeg name).
    Render(RenderArgs),
    /// List the attributes of a file, in the spirit of dcmdump.
    Dump(DumpArgs),
    /// De-identify files or folders (PS3.15 Basic Application Level Confidentiality Profile).
    Deid(super::deid::DeidArgs),
}

#[derive(Args)]
pub struct DecodeArgs {
    /// DICOM Part 10 file.
    pub file: PathBuf,
    /// Output .npy file.
    #[arg(long, value_name = "OUT.npy")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct RenderArgs {
    /// DICOM Part 10 file.
    pub file: PathBuf,
    /// Frame number, from 1 (as in DICOMweb).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub frame: u32,
    /// Window centre and width in modality units, e.g. `--window 40,400` (default: the file's
    /// first window, else its VOI LUT, else the frame's min..max).
    #[arg(long, value_name = "C,W", allow_hyphen_values = true)]
    pub window: Option<Window>,
    /// VOI LUT function for the window: linear, linear-exact or sigmoid (default: the file's).
    #[arg(long, value_name = "F", value_parser = parse_function)]
    pub function: Option<VoiFunction>,
    /// Fit the image inside SIZE×SIZE pixels (keeping its aspect ratio).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<u32>,
    /// Output file: .png, or .jpg/.jpeg for JPEG.
    #[arg(long, value_name = "OUT.png")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct DumpArgs {
    /// DICOM Part 10 file.
    pub file: PathBuf,
}

fn parse_function(s: &str) -> Result<VoiFunction, String> {
    match s.to_ascii_lowercase().replace('_', "-").as_str() {
        "linear" => Ok(VoiFunction::Linear),
        "linear-exact" => Ok(VoiFunction::LinearExact),
        "sigmoid" => Ok(VoiFunction::Sigmoid),
        _ => Err(format!("unknown VOI LUT function {s:?} (linear, linear-exact, sigmoid)")),
    }
}

pub fn run(cmd: DicomCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DicomCommand::Deid(args) => return super::deid::run(args),
        DicomCommand::Decode(a) => {
            let obj = preprocess::open(&a.file).with_context(|| a.file.display().to_string())?;
            let px = preprocess::decode(&obj, None).with_context(|| a.file.display().to_string())?;
            preprocess::npy::save_npy(&px, &a.out)?;
            println!(
                "{}: {} frame(s) of {}x{}, {} sample(s), {} → {}",
                a.file.display(),
                px.frames,
                px.columns,
                px.rows,
                px.samples_per_pixel,
                px.samples.dtype(),
                a.out.display()
            );
        }
        DicomCommand::Render(a) => {
            let frame = a.frame.checked_sub(1).context("frames are numbered from 1")?;
            let obj = preprocess::open(&a.file).with_context(|| a.file.display().to_string())?;
            let opts = RenderOptions { window: a.window, function: a.function };
            let mut img = preprocess::render_frame(&obj, frame, &opts).with_context(|| a.file.display().to_string())?;
            if let Some(size) = a.size {
                let (w, h) = preprocess::render::fit_within(img.width, img.height, size.max(1));
                img = preprocess::render::resize(&img, w, h);
            }
            let ext = a.out.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            let format = if ext == "jpg" || ext == "jpeg" { Format::Jpeg } else { Format::Png };
            let bytes = preprocess::render::encode(&img, format)?;
            std::fs::write(&a.out, bytes).with_context(|| format!("cannot write {}", a.out.display()))?;
        }
        DicomCommand::Dump(a) => {
            let obj = preprocess::open(&a.file).with_context(|| a.file.display().to_string())?;
            print!("{}", crate::dicom::dump::dump(&obj));
        }
    }
    Ok(ExitCode::SUCCESS)
}
