//! Keeps the `ubm` binary loadable on glibc 2.34, the glibc of Amazon Linux 2023 (EMR 7), when
//! it is built on a newer one.
//!
//! glibc 2.35 gave `hypot` and `hypotf` new symbol versions, so a binary linked against glibc
//! 2.35 or later asks for `hypot@GLIBC_2.35`, and an EMR 7 node refuses to start it ("version
//! `GLIBC_2.35' not found"). DataFusion's math functions are the only users. Defining the two
//! functions in the binary binds those calls here instead, to the `libm` crate (a port of musl's
//! implementations; its last bit may differ from glibc's). No ubm plan calls `hypot`.
//! `tests/integration/deploy.rs::the_binary_needs_no_glibc_newer_than_emr_7s` checks the binary.

/// `double hypot(double, double)`.
#[unsafe(no_mangle)]
pub extern "C" fn hypot(x: f64, y: f64) -> f64 {
    libm::hypot(x, y)
}

/// `float hypotf(float, float)`.
#[unsafe(no_mangle)]
pub extern "C" fn hypotf(x: f32, y: f32) -> f32 {
    libm::hypotf(x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn hypot_is_the_euclidean_norm() {
        assert_eq!(super::hypot(3.0, 4.0), 5.0);
        assert_eq!(super::hypotf(5.0, 12.0), 13.0);
        assert!(super::hypot(f64::INFINITY, f64::NAN).is_infinite(), "C99: an infinity wins over NaN");
    }
}
