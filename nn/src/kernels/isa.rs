//! The one run-time choice of instruction set for every hand-written CPU kernel here, with
//! the `VISUALGLM_CPU` override.
//!
//! The CPU is probed once ([`host`]); the path the kernels run ([`active`]) is the host's best
//! one unless the environment variable [`ENV_VAR`] (`VISUALGLM_CPU`) names another:
//!
//! | value | path | what the kernels run |
//! |---|---|---|
//! | `avx512` | [`Isa::Avx512`]: AVX-512F on top of [`Isa::Avx2`] | the 512-bit forms; the Q4_0 GEMV takes its VNNI kernel when the CPU also has AVX-512 VNNI and VL, else its AVX2 kernel |
//! | `avx2` | [`Isa::Avx2`]: AVX2, FMA and F16C | the 256-bit forms |
//! | `scalar` | [`Isa::Scalar`]: the build's baseline target | the fused element-wise ops and decode attention as compiled for the baseline (SSE2 on x86-64); the f16 and Q4_0 GEMVs and the f32 GEMM split decline, so candle computes those products |
//!
//! The value is read once, case-insensitively, surrounding blanks ignored; unset or empty
//! means the host's best path. A path above what the host has is clamped down to the host's
//! best, and a value that names no path is ignored, each with one `tracing` warning; neither
//! is an error. So on an AVX-512 host `VISUALGLM_CPU=avx2` runs every kernel's AVX2 path, e.g.
//! to time it.
//!
//! Not covered: the `gemm` crate picks its own instruction set, both inside candle's matmul
//! and where the kernels call it (the f32 GEMM split, attention on fused projections, the
//! Q4_0 prefill's f32 product), and so do candle's own CPU kernels.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The environment variable that overrides the detected path: `scalar`, `avx2` or `avx512`.
pub const ENV_VAR: &str = "VISUALGLM_CPU";

/// A path of the kernels, ordered from the least to the most the CPU must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// The build's baseline target features only (no run-time chosen SIMD).
    Scalar,
    /// AVX2, FMA and F16C (x86-64).
    Avx2,
    /// AVX-512F with everything of [`Isa::Avx2`] (x86-64). Kernels that need more (the Q4_0
    /// GEMV's VNNI form needs AVX-512 VNNI and VL) check that themselves and otherwise run
    /// their AVX2 form.
    Avx512,
}

impl Isa {
    /// Every path, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Avx512];

    /// The name [`ENV_VAR`] takes for this path: `scalar`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// This path, or the host's best one if this one needs more than the host has: what a
    /// kernel asked to run on `self` runs on this CPU.
    pub fn clamped(self) -> Isa {
        self.min(host())
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A value of [`ENV_VAR`] that names no path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownIsa(pub String);

impl fmt::Display for UnknownIsa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an instruction-set path (scalar, avx2 or avx512)",
            self.0
        )
    }
}

impl std::error::Error for UnknownIsa {}

impl FromStr for Isa {
    type Err = UnknownIsa;

    /// `scalar`, `avx2` or `avx512`, in any case, surrounding blanks ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownIsa(s.to_string()))
    }
}

/// The best path this CPU supports (probed once).
pub fn host() -> Isa {
    static HOST: OnceLock<Isa> = OnceLock::new();
    *HOST.get_or_init(detect)
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        if avx2 && is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else if avx2 {
            Isa::Avx2
        } else {
            Isa::Scalar
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Isa::Scalar
    }
}

/// Whether the CPU has AVX-512 VNNI and AVX-512 VL, which the Q4_0 GEMV's VNNI kernel needs
/// on top of [`Isa::Avx512`] (probed once; always `false` off x86-64).
pub(crate) fn has_avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: OnceLock<bool> = OnceLock::new();
        *VNNI.get_or_init(|| {
            host() == Isa::Avx512
                && is_x86_feature_detected!("avx512vnni")
                && is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Every path this CPU can run, lowest first: [`Isa::Scalar`] up to [`host`]. Tests run each
/// kernel on each of them.
pub fn supported_paths() -> Vec<Isa> {
    let host = host();
    Isa::ALL.into_iter().filter(|&isa| isa <= host).collect()
}

/// The path the kernels run: [`host`], or the one [`ENV_VAR`] names, clamped to the host's
/// (read once; a clamped or unknown value is logged once as a warning).
pub fn active() -> Isa {
    static ACTIVE: OnceLock<Isa> = OnceLock::new();
    *ACTIVE.get_or_init(|| {
        let value = std::env::var_os(ENV_VAR).map(|v| v.to_string_lossy().into_owned());
        let choice = resolve(value.as_deref(), host());
        if let Some(warning) = &choice.warning {
            tracing::warn!("{warning}");
        }
        choice.isa
    })
}

/// The outcome of reading [`ENV_VAR`]: the path to run and, if the value was not taken as
/// given, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    /// The path the kernels run.
    pub isa: Isa,
    /// Set when the value was clamped or ignored.
    pub warning: Option<String>,
}

/// The path for the value `value` of [`ENV_VAR`] (`None` when unset) on a host whose best path
/// is `host`: the named path clamped to `host`, or `host` when unset, empty or unknown.
pub(crate) fn resolve(value: Option<&str>, host: Isa) -> Choice {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Choice {
            isa: host,
            warning: None,
        };
    };
    match value.parse::<Isa>() {
        Ok(isa) if isa <= host => Choice { isa, warning: None },
        Ok(isa) => Choice {
            isa: host,
            warning: Some(format!(
                "{ENV_VAR}={isa}: this CPU supports up to {host}; the kernels run {host}"
            )),
        },
        Err(e) => Choice {
            isa: host,
            warning: Some(format!("{ENV_VAR}: {e}; ignored, the kernels run {host}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_parsed_and_clamped_to_the_host() {
        for host in Isa::ALL {
            // Unset, empty or blank: the host's best, silently.
            for value in [None, Some(""), Some("  ")] {
                assert_eq!(
                    resolve(value, host),
                    Choice {
                        isa: host,
                        warning: None
                    }
                );
            }
            for want in Isa::ALL {
                for spelled in [
                    want.name().to_string(),
                    want.name().to_uppercase(),
                    format!(" {} ", want.name()),
                ] {
                    let got = resolve(Some(&spelled), host);
                    if want <= host {
                        assert_eq!(got.isa, want, "{spelled:?} on {host}");
                        assert!(got.warning.is_none(), "{spelled:?} on {host}");
                    } else {
                        // Above the host: clamped down, with a warning.
                        assert_eq!(got.isa, host, "{spelled:?} on {host}");
                        assert!(got.warning.is_some_and(|w| w.contains("supports up to")));
                    }
                }
            }
            // Unknown values: ignored with a warning, never a panic.
            for bad in [
                "avx",
                "sse2",
                "avx-512",
                "avx512vnni",
                "0",
                "scalar,avx2",
                "\u{fffd}",
            ] {
                let got = resolve(Some(bad), host);
                assert_eq!(got.isa, host, "{bad:?}");
                assert!(
                    got.warning.is_some_and(|w| w.contains("ignored")),
                    "{bad:?}"
                );
            }
        }
    }

    #[test]
    fn supported_paths_run_from_scalar_to_the_host() {
        let paths = supported_paths();
        eprintln!(
            "host: {}, supported paths: {paths:?}, active: {}",
            host(),
            active()
        );
        assert_eq!(paths.first(), Some(&Isa::Scalar));
        assert_eq!(paths.last(), Some(&host()));
        assert!(paths.windows(2).all(|p| p[0] < p[1]));
        assert!(active() <= host());
        for isa in Isa::ALL {
            assert_eq!(isa.to_string().parse::<Isa>(), Ok(isa));
            assert_eq!(isa.clamped(), isa.min(host()));
        }
        if has_avx512_vnni() {
            assert_eq!(host(), Isa::Avx512);
        }
    }
}
